"""What media reports during a call, written onto the call: transcript lines, supervisor
decisions, reservation signals and the agent's outcome (which also makes the booking).

Each write appends the matching event in the same transaction. Which outcome makes
which booking is the domain's rule (`core.domain.bookings.booking_for`).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from core.app import bookings, events
from core.domain import bookings as rules
from core.domain.errors import not_found
from core.store.sql import calls as sql


async def add_transcript(pool: asyncpg.Pool[Any], call_id: str, line: dict[str, Any]) -> None:
    """A final line joins transcript_full and becomes a `transcript` event. Interim lines
    (media sends none) are dropped: the durable log keeps each utterance once, as said."""
    if not line.get("final"):
        return
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql.APPEND_TRANSCRIPT, call_id, line)
        await events.append(conn, call_id, "transcript", line)


async def add_decision(pool: asyncpg.Pool[Any], call_id: str, decision: dict[str, Any]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql.APPEND_DECISION, call_id, decision)
        await events.append(conn, call_id, "supervisor_decision", decision)


async def add_signal(pool: asyncpg.Pool[Any], call_id: str, name: str) -> None:
    name = name.strip()[:64]
    if not name:
        return
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql.ADD_SIGNAL, call_id, name)
        await events.append(conn, call_id, "signal", {"name": name})


async def record_outcome(
    pool: asyncpg.Pool[Any], call_id: str, outcome: dict[str, Any]
) -> str | None:
    """Store the agent's end_call outcome; return the booking id it created, if any."""
    kind = rules.outcome_kind(outcome.get("outcome", ""))
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql.LOCK_FOR_OUTCOME, call_id)
        if row is None:
            raise not_found("call")
        booking_id = None
        plan = rules.booking_for(kind, row["kind"])
        if plan is not None:
            booking_id = await bookings.create(
                conn,
                customer_id=row["customer_id"],
                call_id=call_id,
                type=plan.type,
                target_phone=row["target_phone"],
                status=plan.status,
                language=row["language"],
                venue_name=outcome.get("venue_name") or None,
                booking_date=rules.booking_date(outcome.get("date_time", "")),
                guests=outcome.get("guests"),
                booking_holder_name=outcome.get("holder_name") or None,
                details=outcome.get("summary") or None,
                refusal_reason=outcome.get("refusal_reason") or None,
            )
        stored = {**outcome, "outcome": kind, "booking_id": booking_id}
        await conn.execute(sql.SET_OUTCOME, call_id, stored, kind, outcome.get("summary") or None)
    return booking_id


async def attach_session(
    pool: asyncpg.Pool[Any], call_id: str, pod: str, call_sid: str
) -> asyncpg.Record:
    """Media attached to the call: remember its pod (and sid); return the task it runs,
    with the call's SID as stored (media refuses a stream whose SID differs).

    Raises:
        CallagentError: NOT_FOUND for an unknown call.
    """
    task: asyncpg.Record | None = await pool.fetchrow(sql.ATTACH_SESSION, call_id, pod, call_sid)
    if task is None:
        raise not_found("call")
    return task
