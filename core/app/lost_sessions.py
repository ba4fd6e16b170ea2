"""A call whose media pod died: noticed within seconds, hung up and settled, not left deaf.

A media session is one gRPC stream per call. When it ends without media closing its side
(the pod was killed, its node or network vanished) the servicer marks the call
(`session_lost_at`, for that attach number). Media may come back: after a core restart it
re-opens the session against any replica within ~2 s, and that attach clears the mark. A mark
still standing after `grace_sec` means the pod is gone, so core ends the call itself: the
replica that saw the break checks after the grace, and every replica's reconciler pass sweeps
what a replica that died meanwhile left behind. Settling takes the row lock and clears the
mark, so it happens once:
- no outcome reported yet: the call is failed (credits released, nothing charged) with a
  summary saying the media server stopped, then the carrier leg is hung up;
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
        """Broken sessions this replica is waiting out the grace for."""
        return len(self._timers)

    async def broke(self, call_id: str, session_seq: int) -> None:
        """The session of attach `session_seq` ended without a clean close: mark the call,
        and settle it after the grace unless media re-attaches meanwhile."""
        marked = await self._calls.pool.execute(
            sql.MARK_LOST, call_id, session_seq, list(st.TERMINAL)
        )
        if marked != "UPDATE 1":
            return
        log.warning("media session lost", extra={"call_id": call_id})
        timer = asyncio.create_task(self._settle_later(call_id), name=f"lost-{call_id}")
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
                summary = stuck_calls.lost_session_summary(row["owner_pod"], self._grace_sec)
                await call_status.transition_in(
                    conn,
                    call_id,
                    st.FAILED,
                    call_status.Change(outcome_type="failed", outcome_summary=summary),
                    rate_cents_per_minute=calls.policy.rate_cents_per_minute,
                )
        log.warning("hanging up a call whose media session was lost", extra={"call_id": call_id})
        if row["call_sid"]:
            await calls.hang_up(row["call_sid"], call_id)
        return True

    async def aclose(self) -> None:
        await cancel_and_wait(*self._timers)

    async def _settle_later(self, call_id: str) -> None:
        await asyncio.sleep(self._grace_sec)
        try:
            await self.settle(call_id)
        except Exception:  # the reconciler's sweep retries
            log.exception("settling a lost media session failed", extra={"call_id": call_id})
