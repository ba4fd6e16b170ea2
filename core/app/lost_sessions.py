"""A call whose media pod died: noticed within seconds, hung up and settled, not left deaf.

A media session is one gRPC stream per call. When it ends while the call is not over, the
call is marked (`session_lost_at`, for that attach number): the pod may have been killed, or
its node or network vanished, and gRPC cannot tell that from media closing its side. Usually
it was a clean end, and the carrier's final status makes the call terminal within a second.
Media may also come back: after a core restart it re-opens the session against any replica
within ~2 s, and that attach clears the mark. A call still live and marked after `grace_sec`
has lost its media, so core ends it itself: the replica that saw the session end checks after
the grace, and every replica's reconciler pass sweeps what a replica that died meanwhile left
behind. Settling takes the row lock and clears the mark, so it happens once:
- no outcome reported yet: the call is failed (credits released, nothing charged) with a
  summary saying the media server stopped, then the carrier leg is hung up. That holds
  even when the carrier ended the call first (it does as soon as the dead pod's stream
  closes, usually before the grace): its `completed` waited for media's outcome
  (`core.app.provider_events`), and the leg needs no hang-up;
- an outcome was reported (media died between end_call and its hang-up): only the leg is
  hung up, and the carrier's final status settles the call as usual.
"""

from __future__ import annotations

import asyncio
import logging

from common.aio import cancel_and_wait
from core.app import call_status
from core.app.calls import CallService
from core.domain import call_states as st
from core.domain import stuck_calls
from core.store.sql import lost_sessions as sql

log = logging.getLogger(__name__)


class LostSessions:
    """Marks broken media sessions and settles the calls of those that stay gone."""

    def __init__(self, calls: CallService, grace_sec: float) -> None:
        self._calls = calls
        self._grace_sec = grace_sec
        self._timers: set[asyncio.Task[None]] = set()

    @property
    def watching(self) -> int:
        """Broken sessions this replica is marking or waiting out the grace for."""
        return len(self._timers)

    def ended(self, call_id: str, session_seq: int) -> None:
        """The session of attach `session_seq` ended: mark the call unless it is over, and
        settle it after the grace unless it ends or media re-attaches meanwhile. Runs in a
        task of its own, so the cancelled RPC that reports it cannot cut it short."""
        timer = asyncio.create_task(self._watch(call_id, session_seq), name=f"lost-{call_id}")
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def settle_due(self) -> int:
        """Settle every call whose session has been lost for longer than the grace."""
        due = await self._calls.pool.fetch(sql.DUE, self._grace_sec)
        return sum([await self.settle(row["call_id"]) for row in due])

    async def settle(self, call_id: str) -> bool:
        """Hang up and settle `call_id` if its session is still lost after the grace."""
        calls = self._calls
        async with calls.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.CLAIM, call_id, self._grace_sec)
            if row is None or row["status"] in st.TERMINAL:
                return False
            if not row["reported"]:
                summary = stuck_calls.lost_session_summary(
                    row["owner_pod"], self._grace_sec, carrier_ended=row["carrier_ended"]
                )
                await call_status.transition_in(
                    conn,
                    call_id,
                    st.FAILED,
                    call_status.Change(outcome_type="failed", outcome_summary=summary),
                    rate_cents_per_minute=calls.policy.rate_cents_per_minute,
                )
        if row["call_sid"] and not row["carrier_ended"]:
            await calls.hang_up(row["call_sid"], call_id)
        return True

    async def aclose(self) -> None:
        await cancel_and_wait(*self._timers)

    async def _watch(self, call_id: str, session_seq: int) -> None:
        try:
            marked = await self._calls.pool.execute(
                sql.MARK_LOST, call_id, session_seq, list(st.TERMINAL)
            )
            if marked != "UPDATE 1":
                return  # re-attached already, or over
            await asyncio.sleep(self._grace_sec)
            if await self.settle(call_id):
                log.warning("a call's media session was lost", extra={"call_id": call_id})
        except Exception:  # once marked, the reconciler's sweep retries
            log.exception("handling a lost media session failed", extra={"call_id": call_id})
