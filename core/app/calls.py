"""Calls: start (direct dial or queued), read, cancel, and every status change.

Every status change goes through `transition()`: one row lock, the state machine's
verdict, and — when the new status is terminal — the credit settlement, all in one
transaction. That is what makes "every reservation ends captured or released,
exactly once" hold whatever order provider callbacks, cancels and crashes come in.
Only the provider's dial happens outside a transaction, behind a recovery point:
the call row is committed as `scheduled` with `dial_started_at` first.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from core.app import credits, events, idempotency, maintenance, sessions
from core.app.api_keys import new_id
from core.domain import call_states as st
from core.domain import phones
from core.domain.errors import CallagentError, not_found
from core.store.database import Conn
from telephony.port import Telephony, TelephonyError

log = logging.getLogger(__name__)

LANGUAGES = ("ru", "en", "auto")
KINDS = (
    "restaurant_booking",
    "restaurant_cancel",
    "doctor_appointment",
    "hotel_booking",
    "concierge",
    "other",
)
ASK_USER_MODES = ("any", "stream")
MAX_BRIEF = 4000
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000

CALL_COLUMNS = """c.call_id, c.customer_id, c.task_id, c.target_phone, c.language, c.status,
    c.call_sid, c.owner_pod, c.credits_reserved, c.started_at, c.ended_at, c.duration_sec,
    c.outcome_type, c.outcome_summary, c.outcome_charge_cents, c.created_at,
    c.recording_sid IS NOT NULL AS has_recording, c.reservation_signals"""
DETAIL_COLUMNS = CALL_COLUMNS + ", c.transcript_full, c.supervisor_decisions"


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
class StartRequest:
    target_phone: str
    brief: str
    language: str = "auto"
    kind: str = "other"
    parsed_slots: dict[str, Any] | None = None
    ask_user_mode: str = "any"


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

    key: idempotency.Key
    render: Callable[[Started], bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class Replay:
    """The stored first response for a retried Idempotency-Key."""

    response: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """Optional fields written together with a status change."""

    call_sid: str | None = None
    duration_sec: float | None = None
    outcome_type: str | None = None
    outcome_summary: str | None = None


def validate(request: StartRequest, policy: CallPolicy) -> StartRequest:
    """Check and normalise a start request (phone to E.164, trimmed brief)."""
    brief = request.brief.strip()
    if not brief:
        raise CallagentError("INVALID_ARGUMENT_BRIEF", "brief must not be empty")
    if len(brief) > MAX_BRIEF:
        raise CallagentError("INVALID_ARGUMENT_BRIEF", f"brief is longer than {MAX_BRIEF} chars")
    for field, value, allowed in (
        ("language", request.language, LANGUAGES),
        ("kind", request.kind, KINDS),
        ("ask_user_mode", request.ask_user_mode, ASK_USER_MODES),
    ):
        if value not in allowed:
            raise CallagentError(
                "INVALID_ARGUMENT_FIELD", f"{field} must be one of: {', '.join(allowed)}"
            )
    phone = phones.normalize(request.target_phone, allow_fictional=policy.allow_fictional_numbers)
    return dataclasses.replace(request, target_phone=phone, brief=brief)


def _replay(stored: idempotency.Stored) -> Replay:
    if stored.error is not None:
        raise stored.error
    assert stored.response is not None
    return Replay(stored.response)


def charge_for(duration_sec: float | None, rate_cents_per_minute: int, reserved: int) -> int:
    """Billed per started minute, never more than was reserved."""
    minutes = math.ceil(max(duration_sec or 0.0, 0.0) / 60)
    return min(minutes * rate_cents_per_minute, reserved)


async def _in_flight(conn: Conn, customer_id: str) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM calls WHERE customer_id = $1 AND status = ANY($2::text[])",
        customer_id,
        list(st.IN_FLIGHT),
    )
    return int(count)


async def get_row(conn: Conn | asyncpg.Pool[Any], call_id: str, *, details: bool = False) -> Any:
    columns = DETAIL_COLUMNS if details else CALL_COLUMNS
    return await conn.fetchrow(f"SELECT {columns} FROM calls c WHERE c.call_id = $1", call_id)


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
        request = validate(request, self._policy)
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
        if isinstance(persisted, idempotency.Stored):
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
        from core.app import dial_queue

        async with self._pool.acquire() as conn, conn.transaction():
            persisted = await self.persist(conn, customer_id, request, status=st.QUEUED, idem=idem)
            if isinstance(persisted, idempotency.Stored):
                return _replay(persisted)
            call_id = persisted
            queue_id, position = await dial_queue.add(conn, call_id, customer_id)
            row = await get_row(conn, call_id)
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
    ) -> str | idempotency.Stored:
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
            locked = await conn.fetchrow(
                """SELECT c.max_concurrent_calls, m.active, m.message, m.resume_at
                   FROM customers c CROSS JOIN maintenance m
                   WHERE c.customer_id = $1 AND m.id = 1 FOR UPDATE OF c""",
                customer_id,
            )
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
                """WITH task AS (
                       INSERT INTO tasks (task_id, customer_id, brief, language, kind,
                                          parsed_slots, ask_user_mode)
                       VALUES ($3, $2, $10, $5, $11, $12, $13) RETURNING task_id)
                   INSERT INTO calls (call_id, customer_id, task_id, target_phone, language,
                                      status, owner_pod, reservation_id, credits_reserved,
                                      dial_started_at)
                   SELECT $1, $2, task.task_id, $4, $5, $6, $7, $8, $9,
                          CASE WHEN $6 = 'scheduled' THEN now() END
                   FROM task""",
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
            phone = await self._pool.fetchval(
                """UPDATE calls SET dial_started_at = coalesce(dial_started_at, now())
                   WHERE call_id = $1 AND status = 'scheduled' RETURNING target_phone""",
                call_id,
            )
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
            before = await conn.fetchval(
                "SELECT status FROM calls WHERE call_id = $1 FOR UPDATE", call_id
            )
            row = await conn.fetchrow(
                f"""UPDATE calls c SET call_sid = coalesce(c.call_sid, $2),
                           status = CASE WHEN c.status = 'scheduled' THEN 'dialing'
                                         ELSE c.status END,
                           updated_at = now()
                    WHERE c.call_id = $1 RETURNING {CALL_COLUMNS}""",
                call_id,
                call_sid,
            )
            if before == st.SCHEDULED:
                await events.append(
                    conn, call_id, "status", {"status": st.DIALING, "from": before}, locked=True
                )
        assert row is not None, "calls are never deleted"
        if row["status"] == st.CANCELLED:
            # Cancelled while the dial was in flight: end the leg we just created.
            await self._hang_up(call_sid, call_id)
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
            return await transition_in(conn, call_id, target, change, self._policy)

    async def list_for(
        self, customer_id: str, limit: int | None, since: Any | None
    ) -> Sequence[asyncpg.Record]:
        limit = DEFAULT_LIST_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise CallagentError(
                "INVALID_ARGUMENT_LIMIT", f"limit must be between 1 and {MAX_LIST_LIMIT}"
            )
        return await self._pool.fetch(
            f"""SELECT {CALL_COLUMNS} FROM calls c
                WHERE c.customer_id = $1 AND ($2::timestamptz IS NULL OR c.created_at >= $2)
                ORDER BY c.created_at DESC, c.call_id DESC LIMIT $3""",
            customer_id,
            since,
            limit,
        )

    async def get_for(self, customer_id: str, call_id: str) -> asyncpg.Record:
        row = await self._pool.fetchrow(
            f"SELECT {DETAIL_COLUMNS} FROM calls c WHERE c.call_id = $1 AND c.customer_id = $2",
            call_id,
            customer_id,
        )
        if row is None:
            raise not_found("call")
        return row  # type: ignore[no-any-return]

    async def cancel(self, customer_id: str, call_id: str) -> bool:
        """Cancel an unfinished call of this customer: release credits, leave the queue,
        hang up a live leg. False for unknown, foreign or already-final calls."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT status, call_sid FROM calls WHERE call_id = $1 AND customer_id = $2 "
                "FOR UPDATE",
                call_id,
                customer_id,
            )
            if row is None or row["status"] in st.TERMINAL:
                return False
            await transition_in(
                conn,
                call_id,
                st.CANCELLED,
                Change(outcome_type="cancelled", outcome_summary="cancelled by the customer"),
                self._policy,
            )
            await conn.execute(
                "UPDATE dial_queue SET state = 'done' WHERE call_id = $1 AND state <> 'done'",
                call_id,
            )
        if row["call_sid"]:
            await self._hang_up(row["call_sid"], call_id)
        await sessions.publish(
            self._pool, sessions.Command(call_id=call_id, kind="hang_up", reason="cancelled")
        )
        return True

    async def recording(self, call_id: str) -> bytes | None:
        """The call's recording (MP3), None while the carrier is still processing it.

        Prefers the sid from the recording callback; if that callback has not landed,
        asks the carrier and remembers what it found.

        Raises:
            CallagentError: NOT_FOUND for an unknown call or one that was never dialed.
        """
        row = await self._pool.fetchrow(
            "SELECT call_sid, recording_sid FROM calls WHERE call_id = $1", call_id
        )
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
                    return None
                recording_sid = found[0].sid
                await self._pool.execute(
                    "UPDATE calls SET recording_sid = $2, recording_duration = $3 "
                    "WHERE call_id = $1 AND recording_sid IS NULL",
                    call_id,
                    recording_sid,
                    found[0].duration_sec,
                )
            return await self._telephony.fetch_recording(recording_sid)
        except TelephonyError as err:
            log.warning("recording fetch failed", extra={"call_id": call_id})
            raise CallagentError(
                "CARRIER_ERROR", f"the carrier did not serve the recording: {err.message}"
            ) from None

    async def _hang_up(self, call_sid: str, call_id: str) -> None:
        try:
            await self._telephony.hang_up(call_sid)
        except TelephonyError as err:
            log.warning("hang-up failed", extra={"call_id": call_id, "retryable": err.retryable})


async def transition_in(
    conn: Conn, call_id: str, target: str, change: Change, policy: CallPolicy
) -> bool:
    """`CallService.transition` inside the caller's transaction."""
    row = await conn.fetchrow(
        "SELECT status, reservation_id, credits_reserved, duration_sec FROM calls "
        "WHERE call_id = $1 FOR UPDATE",
        call_id,
    )
    if row is None:
        raise not_found("call")
    current = row["status"]
    if current == target:
        return False
    if not st.is_allowed(current, target):
        raise CallagentError(
            "ILLEGAL_TRANSITION", f"a {current} call cannot become {target}", status=current
        )
    duration = change.duration_sec if change.duration_sec is not None else row["duration_sec"]
    charge = 0
    if target == st.COMPLETED:
        amount = charge_for(duration, policy.rate_cents_per_minute, row["credits_reserved"])
        charge = await credits.capture(conn, row["reservation_id"], amount) or 0
    elif target in st.TERMINAL:
        await credits.release(conn, row["reservation_id"])
    await conn.execute(
        """UPDATE calls SET
               status = $2,
               call_sid = coalesce($3, call_sid),
               duration_sec = $4,
               started_at = CASE WHEN $2 = 'in_progress' THEN coalesce(started_at, now())
                                 ELSE started_at END,
               ended_at = CASE WHEN $5 THEN coalesce(ended_at, now()) ELSE ended_at END,
               outcome_type = coalesce(outcome_type, $6),
               outcome_summary = coalesce(outcome_summary, $7),
               outcome_charge_cents = CASE WHEN $5 THEN $8 ELSE outcome_charge_cents END,
               updated_at = now()
           WHERE call_id = $1""",
        call_id,
        target,
        change.call_sid,
        duration,
        target in st.TERMINAL,
        change.outcome_type,
        change.outcome_summary,
        charge,
    )
    await events.append(conn, call_id, "status", {"status": target, "from": current}, locked=True)
    if target in st.TERMINAL:
        final = await conn.fetchrow(
            "SELECT outcome_type, outcome_summary, outcome, duration_sec FROM calls "
            "WHERE call_id = $1",
            call_id,
        )
        assert final is not None
        await events.append(
            conn,
            call_id,
            "outcome",
            {
                "status": target,
                "outcome_type": final["outcome_type"],
                "outcome_summary": final["outcome_summary"],
                "outcome_charge_cents": charge,
                "duration_sec": final["duration_sec"],
                "details": final["outcome"],
            },
            locked=True,
        )
    log.info("call status", extra={"call_id": call_id, "from": current, "to": target})
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A carrier callback, already authenticated by the media process."""

    kind: str  # status | amd | recording
    call_sid: str
    call_id: str = ""
    status: str = ""
    duration_sec: float | None = None
    answered_by: str | None = None
    recording_sid: str | None = None
    recording_url: str | None = None
    recording_duration_sec: float | None = None
    recording_status: str | None = None


async def apply_provider_event(service: CallService, event: ProviderEvent) -> bool:
    """Apply a carrier callback; False when it is stale (repeated or out of order)."""
    pool = service.pool
    call_id = event.call_id or await pool.fetchval(
        "SELECT call_id FROM calls WHERE call_sid = $1", event.call_sid
    )
    if not call_id:
        raise not_found("call")
    if event.kind == "status":
        if event.status not in st.ALL:
            raise CallagentError("INVALID_ARGUMENT_FIELD", f"unknown status {event.status!r}")
        change = Change(call_sid=event.call_sid or None, duration_sec=event.duration_sec)
        if event.status in (st.BUSY, st.NO_ANSWER, st.FAILED, st.CANCELLED):
            change = dataclasses.replace(
                change,
                outcome_type=event.status,
                outcome_summary=f"carrier reported {event.status}",
            )
        try:
            return await service.transition(call_id, event.status, change)
        except CallagentError as err:
            if err.reason != "ILLEGAL_TRANSITION":
                raise
            log.info("stale carrier status ignored", extra={"call_id": call_id, "to": event.status})
            return False
    if event.kind == "amd":
        await pool.execute(
            "UPDATE calls SET answered_by = $2, updated_at = now() WHERE call_id = $1",
            call_id,
            event.answered_by,
        )
        return True
    if event.kind == "recording":
        if event.recording_status not in (None, "completed"):
            return False
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE calls SET recording_sid = $2, recording_url = $3,
                       recording_duration = $4, updated_at = now() WHERE call_id = $1""",
                call_id,
                event.recording_sid,
                event.recording_url,
                event.recording_duration_sec,
            )
            await events.append(
                conn,
                call_id,
                "recording_ready",
                {
                    "recording_url": f"/calls/{call_id}/recording",
                    "duration_sec": event.recording_duration_sec,
                },
            )
        return True
    raise CallagentError("INVALID_ARGUMENT_FIELD", f"unknown event kind {event.kind!r}")
