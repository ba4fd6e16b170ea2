"""Calls: start (direct dial or queued), dial, read, cancel and fetch the recording.

A start validates the task (`core.domain.tasks`), then in one transaction claims the
Idempotency-Key, checks maintenance and the concurrency cap, reserves credits and
inserts the call. Only the provider's dial happens outside a transaction, behind a
recovery point: the call row is committed as `scheduled` with `dial_started_at` first.
Every status change goes through `core.app.call_status.transition_in`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg

from core.app import (
    call_status,
    credits,
    dial_queue,
    events,
    idempotency,
    maintenance,
    recordings,
    sessions,
)
from core.app.api_keys import new_id
from core.app.call_status import Change
from core.domain import call_states as st
from core.domain import tasks
from core.domain.errors import CallagentError, not_found
from core.domain.idempotency import Key, Stored
from core.domain.tasks import StartRequest
from core.store.database import Conn
from core.store.sql import calls as sql
from telephony.port import RecordingMedia, Telephony, TelephonyError

log = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class CallPolicy:
    """The settings that shape calls (from core.settings.Settings)."""

    reserve_cents: int
    rate_cents_per_minute: int
    queue_enabled: bool
    allow_fictional_numbers: bool
    pod_name: str
    idempotency_ttl_sec: float = 24 * 3600.0
    idempotency_stale_sec: float = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    """The result of a start: a dialed call (201) or a queued one (202)."""

    call: asyncpg.Record
    task_id: str
    credits_reserved: int
    queued: bool
    queue_id: str = ""
    position: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Idempotent:
    """An Idempotency-Key plus how to serialize this API's response for replays."""

    key: Key
    render: Callable[[Started], bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class Replay:
    """The stored first response for a retried Idempotency-Key."""

    response: bytes


def _replay(stored: Stored) -> Replay:
    if stored.error is not None:
        raise stored.error
    assert stored.response is not None
    return Replay(stored.response)


async def _in_flight(conn: Conn, customer_id: str) -> int:
    count = await conn.fetchval(sql.COUNT_IN_FLIGHT, customer_id, list(st.IN_FLIGHT))
    return int(count)


class CallService:
    """Use cases on calls; owns no connection state, only the pool and the carrier port."""

    def __init__(self, pool: asyncpg.Pool[Any], telephony: Telephony, policy: CallPolicy) -> None:
        self._pool = pool
        self._telephony = telephony
        self._policy = policy

    @property
    def policy(self) -> CallPolicy:
        return self._policy

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        return self._pool

    async def start(
        self, customer_id: str, request: StartRequest, idem: Idempotent | None = None
    ) -> Started | Replay:
        """Validate, gate on maintenance, then dial now or enqueue (per CALL_QUEUE_ENABLED).

        With an Idempotency-Key, a retry gets the first attempt's stored response
        (or its error) and never reaches the carrier again.
        """
        request = tasks.validate(
            request, allow_fictional_numbers=self._policy.allow_fictional_numbers
        )
        if idem is not None:
            stored = await idempotency.lookup(
                self._pool, idem.key, self._policy.idempotency_stale_sec
            )
            if stored is not None:
                return _replay(stored)
        if self._policy.queue_enabled:
            return await self.enqueue(customer_id, request, idem)
        async with self._pool.acquire() as conn:
            persisted = await self.persist(
                conn, customer_id, request, status=st.SCHEDULED, idem=idem
            )
        if isinstance(persisted, Stored):
            return _replay(persisted)
        try:
            started = await self.dial(persisted, phone=request.target_phone)
        except CallagentError as err:
            if idem is not None:
                await idempotency.finish(self._pool, idem.key, call_id=persisted, error=err)
            raise
        assert started is not None, "a scheduled call is dialed unless cancelled"
        if idem is not None:
            await idempotency.finish(
                self._pool, idem.key, call_id=persisted, response=idem.render(started)
            )
        return started

    async def enqueue(
        self, customer_id: str, request: StartRequest, idem: Idempotent | None = None
    ) -> Started | Replay:
        """Persist a `queued` call and its queue entry; the drainer dials it later."""
        async with self._pool.acquire() as conn, conn.transaction():
            persisted = await self.persist(conn, customer_id, request, status=st.QUEUED, idem=idem)
            if isinstance(persisted, Stored):
                return _replay(persisted)
            call_id = persisted
            queue_id, position = await dial_queue.add(conn, call_id, customer_id)
            row = await call_status.get_row(conn, call_id)
            started = Started(
                call=row,
                task_id=row["task_id"],
                credits_reserved=row["credits_reserved"],
                queued=True,
                queue_id=queue_id,
                position=position,
            )
            if idem is not None:
                await idempotency.finish(
                    conn, idem.key, call_id=call_id, response=idem.render(started)
                )
        return started

    async def persist(
        self,
        conn: Conn,
        customer_id: str,
        request: StartRequest,
        *,
        status: str,
        idem: Idempotent | None = None,
    ) -> str | Stored:
        """Insert task + call and reserve credits in one transaction; return the call id.

        The Idempotency-Key (if any) is claimed first in the same transaction; if another
        attempt already holds it, its stored outcome is returned instead and nothing is
        written. For direct dialing (`scheduled`) the customer row is locked, so the
        concurrency cap holds under any number of simultaneous requests.
        """
        call_id, task_id = new_id("call"), new_id("task")
        async with conn.transaction():
            if idem is not None:
                earlier = await idempotency.claim(
                    conn,
                    idem.key,
                    self._policy.idempotency_ttl_sec,
                    self._policy.idempotency_stale_sec,
                )
                if earlier is not None:
                    return earlier
            locked = await conn.fetchrow(sql.LOCK_CUSTOMER_FOR_START, customer_id)
            if locked is None:
                raise not_found("customer")
            maintenance.gate(
                maintenance.Window(locked["active"], locked["message"], locked["resume_at"])
            )
            cap = locked["max_concurrent_calls"]
            if status == st.SCHEDULED and await _in_flight(conn, customer_id) >= cap:
                raise CallagentError(
                    "CONCURRENCY_LIMIT",
                    f"{cap} call(s) already in flight; cancel one (POST /calls/{{id}}/cancel) "
                    "or raise the cap (PUT /users/me/limits)",
                    max_concurrent_calls=str(cap),
                )
            reservation = await credits.reserve(
                conn, customer_id, self._policy.reserve_cents, call_id
            )
            await conn.execute(
                sql.INSERT_TASK_AND_CALL,
                call_id,
                customer_id,
                task_id,
                request.target_phone,
                request.language,
                status,
                self._policy.pod_name,
                reservation,
                self._policy.reserve_cents,
                request.brief,
                request.kind,
                request.parsed_slots,
                request.ask_user_mode,
            )
            await events.append(conn, call_id, "status", {"status": status}, locked=True)
        return call_id

    async def dial(self, call_id: str, phone: str | None = None) -> Started | None:
        """Dial a committed `scheduled` call; on provider failure fail it and release credits.

        `dial_started_at` is recorded first (direct starts insert it; pass `phone` then):
        after a crash, a call that has it but no call_sid is failed rather than dialed
        again. None if the call left `scheduled`.
        """
        if phone is None:
            phone = await self._pool.fetchval(sql.MARK_DIAL_STARTED, call_id)
        if phone is None:
            return None
        try:
            call_sid = await self._telephony.dial(call_id, phone)
        except TelephonyError as err:
            log.warning("dial failed", extra={"call_id": call_id, "retryable": err.retryable})
            await self.transition(
                call_id, st.FAILED, Change(outcome_type="failed", outcome_summary=err.message)
            )
            raise CallagentError(
                "DIAL_FAILED", f"the carrier refused the call: {err.message}"
            ) from None
        # scheduled → dialing needs no settlement; carrier callbacks may already have
        # moved the call further (or it was cancelled), so only a scheduled call changes.
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchval(sql.LOCK_STATUS, call_id)
            row = await conn.fetchrow(sql.RECORD_DIALED, call_id, call_sid)
            if before == st.SCHEDULED:
                await events.append(
                    conn, call_id, "status", {"status": st.DIALING, "from": before}, locked=True
                )
        assert row is not None, "calls are never deleted"
        if row["status"] == st.CANCELLED:
            # Cancelled while the dial was in flight: end the leg we just created.
            await self.hang_up(call_sid, call_id)
        return Started(
            call=row,
            task_id=row["task_id"],
            credits_reserved=row["credits_reserved"],
            queued=False,
        )

    async def transition(self, call_id: str, target: str, change: Change = Change()) -> bool:
        """Move a call to `target`; True if applied, False if it already was there.

        Raises:
            CallagentError: ILLEGAL_TRANSITION when the state machine forbids it.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            return await call_status.transition_in(
                conn,
                call_id,
                target,
                change,
                rate_cents_per_minute=self._policy.rate_cents_per_minute,
            )

    async def list_for(
        self, customer_id: str, limit: int | None, since: Any | None
    ) -> Sequence[asyncpg.Record]:
        limit = DEFAULT_LIST_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise CallagentError(
                "INVALID_ARGUMENT_LIMIT", f"limit must be between 1 and {MAX_LIST_LIMIT}"
            )
        return await self._pool.fetch(
            sql.LIST_FOR_CUSTOMER,
            customer_id,
            since,
            limit,
        )

    async def get_for(self, customer_id: str, call_id: str) -> asyncpg.Record:
        row = await self._pool.fetchrow(sql.GET_DETAILED_FOR_CUSTOMER, call_id, customer_id)
        if row is None:
            raise not_found("call")
        return row  # type: ignore[no-any-return]

    async def cancel(self, customer_id: str, call_id: str) -> bool:
        """Cancel an unfinished call of this customer: release credits, leave the queue,
        hang up a live leg. False for unknown, foreign or already-final calls."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.LOCK_FOR_CANCEL, call_id, customer_id)
            if row is None or row["status"] in st.TERMINAL:
                return False
            await call_status.transition_in(
                conn,
                call_id,
                st.CANCELLED,
                Change(outcome_type="cancelled", outcome_summary="cancelled by the customer"),
                rate_cents_per_minute=self._policy.rate_cents_per_minute,
            )
            await dial_queue.leave(conn, call_id)
        if row["call_sid"]:
            await self.hang_up(row["call_sid"], call_id)
        await sessions.publish(
            self._pool, sessions.Command(call_id=call_id, kind="hang_up", reason="cancelled")
        )
        return True

    @contextlib.asynccontextmanager
    async def open_recording(self, call_id: str) -> AsyncIterator[RecordingMedia | None]:
        """The call's recording as the carrier serves it, read chunk by chunk while the
        context is open; None while the carrier is still processing it.

        Prefers the sid from the recording callback; if that callback has not landed,
        asks the carrier, and remembers and announces what it found exactly as the
        callback would have (`core.app.recordings.remember`).

        Raises:
            CallagentError: NOT_FOUND for an unknown call or one that was never dialed;
                CARRIER_ERROR when the carrier fails, also from reading a chunk.
        """
        row = await self._pool.fetchrow(sql.RECORDING_OF, call_id)
        if row is None or row["call_sid"] is None:
            raise not_found("call")
        recording_sid = row["recording_sid"]
        try:
            if recording_sid is None:
                found = [
                    r
                    for r in await self._telephony.list_recordings(row["call_sid"])
                    if r.status == "completed"
                ]
                if not found:
                    yield None
                    return
                recording_sid = found[0].sid
                await recordings.remember(
                    self._pool, call_id, recording_sid, found[0].url, found[0].duration_sec
                )
            async with self._telephony.open_recording(recording_sid) as media:
                yield media
        except TelephonyError as err:
            log.warning("recording fetch failed", extra={"call_id": call_id})
            raise CallagentError(
                "CARRIER_ERROR", f"the carrier did not serve the recording: {err.message}"
            ) from None

    async def hang_up(self, call_sid: str, call_id: str) -> None:
        """End the carrier leg; a carrier failure is logged (the final status still comes)."""
        try:
            await self._telephony.hang_up(call_sid)
        except TelephonyError as err:
            log.warning("hang-up failed", extra={"call_id": call_id, "retryable": err.retryable})
