"""What media reports during a call, written onto the call: transcript lines, supervisor
decisions, reservation signals and the agent's outcome (which also makes or cancels a booking).

Each write appends the matching event in the same transaction. A report carries media's
per-call `seq` (0: none): it is claimed in that transaction too, so a report media replays
after re-attaching to a restarted core is applied once (`sessions.claim_report`).

Which outcome makes which booking, which booking a cancellation cancels, and when the booking
is, are the domain's rules (`core.domain.bookings`, `core.domain.booking_time`).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from core.app import bookings, call_status, events, outcome_verification, sessions
from core.domain import booking_time
from core.domain import bookings as rules
from core.domain import call_states as st
from core.domain.errors import not_found
from core.store.database import Conn
from core.store.sql import calls as sql


async def add_transcript(
    pool: asyncpg.Pool[Any], call_id: str, line: dict[str, Any], seq: int = 0
) -> None:
    """A final line joins transcript_full and becomes a `transcript` event. Interim lines
    (media sends none) are dropped: the durable log keeps each utterance once, as said."""
    if not line.get("final"):
        return
    async with pool.acquire() as conn, conn.transaction():
        if not await sessions.claim_report(conn, call_id, seq):
            return
        await conn.execute(sql.APPEND_TRANSCRIPT, call_id, line)
        await events.append(conn, call_id, "transcript", line)


async def add_decision(
    pool: asyncpg.Pool[Any], call_id: str, decision: dict[str, Any], seq: int = 0
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if not await sessions.claim_report(conn, call_id, seq):
            return
        await conn.execute(sql.APPEND_DECISION, call_id, decision)
        await events.append(conn, call_id, "supervisor_decision", decision)


async def add_signal(pool: asyncpg.Pool[Any], call_id: str, name: str, seq: int = 0) -> None:
    name = name.strip()[:64]
    if not name:
        return
    async with pool.acquire() as conn, conn.transaction():
        if not await sessions.claim_report(conn, call_id, seq):
            return
        await conn.execute(sql.ADD_SIGNAL, call_id, name)
        await events.append(conn, call_id, "signal", {"name": name})


async def record_outcome(
    pool: asyncpg.Pool[Any],
    call_id: str,
    outcome: dict[str, Any],
    analyst: outcome_verification.Analyst | None = None,
    seq: int = 0,
    *,
    rate_cents_per_minute: int,
) -> str | None:
    """Store the agent's end_call outcome; return the booking id it created, if any
    (None too for a replayed outcome, already stored).

    A successful cancellation marks the matching booking `cancelled` instead (its id is kept
    on the outcome as `cancelled_booking_id`) and creates none.

    A claimed `booked` is first checked against the stored transcript (post-call analysis:
    the model through `analyst` when one is configured, else or on its failure the rules,
    `core.app.outcome_verification`): one the call does not support is stored as
    `needs_follow_up` (the claim kept as `agent_claimed`), makes the booking that outcome
    makes, and is logged as a supervisor decision naming the classifier, with its event.

    A call the carrier already completed, its completion waiting for this report
    (`core.app.provider_events`), is completed and charged in the same transaction.
    """
    if await sessions.report_applied(pool, call_id, seq):
        return None
    kind = rules.outcome_kind(outcome.get("outcome", ""))
    answer = None
    if analyst is not None and kind == "booked":
        context = await pool.fetchrow(sql.OUTCOME_CONTEXT, call_id)
        if context is None:
            raise not_found("call")
        answer = await outcome_verification.ask_model(
            analyst,
            call_id=call_id,
            claimed=kind,
            brief=context["brief"] or "",
            task_kind=context["kind"] or "",
            transcript=context["transcript_full"] or (),
        )
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql.LOCK_FOR_OUTCOME, call_id)
        if row is None:
            raise not_found("call")
        if not await sessions.claim_report(conn, call_id, seq):
            return None
        verdict, verification = outcome_verification.verdict(
            kind, row["transcript_full"] or (), answer, analyst
        )
        if verdict.contradicts_agent:
            outcome = {**outcome, "agent_claimed": kind}
            kind = "needs_follow_up"
            decision = {
                "kind": "post_call_analysis",
                "reason": verdict.reason,
                "action": "overruled",
                "classifier": verdict.source,
                "verdict": verification,
            }
            await conn.execute(sql.APPEND_DECISION, call_id, decision)
            await events.append(conn, call_id, "supervisor_decision", decision)
        slots: dict[str, Any] = row["parsed_slots"] if isinstance(row["parsed_slots"], dict) else {}
        ending = rules.ending_of(
            str(outcome.get("ending") or ""),
            call_status=row["status"],
            decisions=row["supervisor_decisions"] or (),
            signals=row["reservation_signals"] or (),
        )
        zone = booking_time.venue_zone(row["target_phone"], slots.get("venue_timezone"))
        when = booking_time.booking_time(outcome.get("date_time"), zone)
        booking_id = cancelled_id = None
        if rules.cancels_booking(kind, row["kind"]):
            request = rules.CancelRequest(
                target_phone=row["target_phone"],
                booking_id=str(slots.get("booking_id") or ""),
                holder_name=str(slots.get("name") or outcome.get("holder_name") or ""),
                local_time=booking_time.local_from_slots(slots) or (when.local if when else None),
            )
            cancelled_id = await bookings.cancel_matching(conn, row["customer_id"], request)
        plan = rules.booking_for(kind, row["kind"], ending)
        if plan is not None:
            booking_id = await _create_booking(conn, call_id, row, slots, outcome, plan, when)
        stored = {
            **outcome,
            "outcome": kind,
            "ending": ending,
            "booking_id": booking_id,
            "cancelled_booking_id": cancelled_id,
            "verification": verification,
        }
        await conn.execute(sql.SET_OUTCOME, call_id, stored, kind, outcome.get("summary") or None)
        if row["carrier_ended"] and row["status"] not in st.TERMINAL:
            await call_status.transition_in(
                conn,
                call_id,
                st.COMPLETED,
                call_status.Change(),
                rate_cents_per_minute=rate_cents_per_minute,
            )
    return booking_id


async def _create_booking(
    conn: Conn,
    call_id: str,
    row: asyncpg.Record,
    slots: dict[str, Any],
    outcome: dict[str, Any],
    plan: rules.BookingPlan,
    when: booking_time.BookingTime | None,
) -> str:
    agent_lines = [
        str(line.get("text") or "")
        for line in row["transcript_full"] or ()
        if isinstance(line, dict) and line.get("speaker") == "agent"
    ]
    return await bookings.create(
        conn,
        customer_id=row["customer_id"],
        call_id=call_id,
        type=plan.type,
        target_phone=row["target_phone"],
        status=plan.status,
        language=rules.spoken_language(
            row["language"], str(outcome.get("language") or ""), agent_lines
        ),
        venue_name=_text(slots.get("venue_name"))
        or _text(slots.get("hotel_name"))
        or _text(outcome.get("venue_name")),
        when=when,
        guests=outcome.get("guests"),
        booking_holder_name=_text(outcome.get("holder_name")),
        contact_phone=rules.contact_phone(
            row["target_phone"], str(outcome.get("contact_phone") or "")
        ),
        details=_text(outcome.get("summary")),
        refusal_reason=_text(outcome.get("refusal_reason")),
    )


def _text(value: Any) -> str | None:
    """A non-blank string, trimmed, or None."""
    return value.strip() or None if isinstance(value, str) else None


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
