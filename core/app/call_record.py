"""What media reports during a call, written onto the call: transcript lines, supervisor
decisions, reservation signals and the agent's outcome (which also makes the booking).

Each write appends the matching event in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import asyncpg

from core.app import bookings, events
from core.domain.errors import not_found

log = logging.getLogger(__name__)

OUTCOMES = ("booked", "refused", "alternative_offered", "needs_follow_up", "failed")
_BOOKING_STATUS = {
    "booked": "active",
    "alternative_offered": "pending_user_confirm",
    "needs_follow_up": "pending_user_confirm",
    "refused": "cancelled",
}
_BOOKING_TYPE = {
    "restaurant_booking": "restaurant",
    "restaurant_cancel": "restaurant",
    "doctor_appointment": "doctor",
    "hotel_booking": "hotel",
}


async def add_transcript(pool: asyncpg.Pool[Any], call_id: str, line: dict[str, Any]) -> None:
    """Final lines join transcript_full; every line becomes a `transcript` event."""
    async with pool.acquire() as conn, conn.transaction():
        if line.get("final"):
            await conn.execute(
                """UPDATE calls
                   SET transcript_full = transcript_full || jsonb_build_array($2::jsonb),
                       updated_at = now()
                   WHERE call_id = $1""",
                call_id,
                line,
            )
        await events.append(conn, call_id, "transcript", line)


async def add_decision(pool: asyncpg.Pool[Any], call_id: str, decision: dict[str, Any]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE calls SET supervisor_decisions = supervisor_decisions
                   || jsonb_build_array($2::jsonb), updated_at = now() WHERE call_id = $1""",
            call_id,
            decision,
        )
        await events.append(conn, call_id, "supervisor_decision", decision)


async def add_signal(pool: asyncpg.Pool[Any], call_id: str, name: str) -> None:
    name = name.strip()[:64]
    if not name:
        return
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE calls SET reservation_signals = array_append(reservation_signals, $2)
               WHERE call_id = $1 AND NOT ($2 = ANY(reservation_signals))""",
            call_id,
            name,
        )
        await events.append(conn, call_id, "signal", {"name": name})


def _when(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        log.warning("unparseable booking date-time from the agent")
        return None


async def record_outcome(
    pool: asyncpg.Pool[Any], call_id: str, outcome: dict[str, Any]
) -> str | None:
    """Store the agent's end_call outcome; return the booking id it created, if any."""
    kind = outcome.get("outcome", "")
    if kind not in OUTCOMES:
        kind = "failed"
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT c.customer_id, c.target_phone, c.language, t.kind
               FROM calls c JOIN tasks t USING (task_id) WHERE c.call_id = $1 FOR UPDATE OF c""",
            call_id,
        )
        if row is None:
            raise not_found("call")
        booking_id = None
        status = _BOOKING_STATUS.get(kind)
        if status is not None:
            booking_id = await bookings.create(
                conn,
                customer_id=row["customer_id"],
                call_id=call_id,
                type=_BOOKING_TYPE.get(row["kind"], "other"),
                target_phone=row["target_phone"],
                status=status,
                language=row["language"],
                venue_name=outcome.get("venue_name") or None,
                booking_date=_when(outcome.get("date_time", "")),
                guests=outcome.get("guests"),
                booking_holder_name=outcome.get("holder_name") or None,
                details=outcome.get("summary") or None,
                refusal_reason=outcome.get("refusal_reason") or None,
            )
        stored = {**outcome, "outcome": kind, "booking_id": booking_id}
        await conn.execute(
            """UPDATE calls SET outcome = $2, outcome_type = $3, outcome_summary = $4,
                   updated_at = now() WHERE call_id = $1""",
            call_id,
            stored,
            kind,
            outcome.get("summary") or None,
        )
    return booking_id
