"""Every status change of a call, inside the caller's transaction.

`transition_in` takes the call row lock, asks the state machine (`core.domain.
call_states`) whether the change applies, settles the credit reservation when the new
status is terminal (capture the charge from `core.domain.billing` for a completed call,
release otherwise), writes the row and appends the `status` (and, at the end, `outcome`)
events, all in one transaction. That is what makes "every reservation ends captured or
released, exactly once" hold whatever order provider callbacks, cancels and crashes
come in. Start, cancel, the drainer and the reconciler all change status through here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import asyncpg

from core.app import credits, events, merge_jobs
from core.domain import billing
from core.domain import call_states as st
from core.domain.errors import not_found
from core.store.database import Conn
from core.store.sql import calls as sql

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """Optional fields written together with a status change."""

    call_sid: str | None = None
    duration_sec: float | None = None
    outcome_type: str | None = None
    outcome_summary: str | None = None


async def get_row(conn: Conn | asyncpg.Pool[Any], call_id: str, *, details: bool = False) -> Any:
    """The call's public columns (plus transcript and decisions with details=True)."""
    return await conn.fetchrow(sql.GET_DETAILED if details else sql.GET, call_id)


async def transition_in(
    conn: Conn, call_id: str, target: str, change: Change, *, rate_cents_per_minute: int
) -> bool:
    """Move a call to `target` in the caller's transaction; False if it already was there.

    Raises:
        CallagentError: NOT_FOUND for an unknown call; ILLEGAL_TRANSITION when the state
            machine forbids the change.
    """
    row = await conn.fetchrow(sql.LOCK_FOR_TRANSITION, call_id)
    if row is None:
        raise not_found("call")
    current = row["status"]
    if not st.should_apply(current, target):
        return False
    duration = change.duration_sec if change.duration_sec is not None else row["duration_sec"]
    charge = 0
    settlement = st.settlement(target)
    if settlement == "capture":
        amount = billing.charge_for(duration, rate_cents_per_minute, row["credits_reserved"])
        charge = await credits.capture(conn, row["reservation_id"], amount) or 0
    elif settlement == "release":
        await credits.release(conn, row["reservation_id"])
    terminal = target in st.TERMINAL
    await conn.execute(
        sql.APPLY_TRANSITION,
        call_id,
        target,
        change.call_sid,
        duration,
        terminal,
        change.outcome_type,
        change.outcome_summary,
        charge,
    )
    await events.append(conn, call_id, "status", {"status": target, "from": current}, locked=True)
    if terminal:
        final = await conn.fetchrow(sql.FINAL_OUTCOME, call_id)
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
        if final["answered"]:  # someone spoke: the call leaves a merged transcript
            await merge_jobs.enqueue(conn, call_id)
    log.info(
        "call status",
        extra={
            "call_id": call_id,
            "customer_id": row["customer_id"],
            "from": current,
            "to": target,
        },
    )
    return True
