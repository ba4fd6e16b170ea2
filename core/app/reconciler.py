"""Finishes what a crash left behind, so no reservation stays open for a dead call.

Runs at core start-up and then periodically on every replica (each fix is a
row-locked state transition, so replicas racing each other change nothing twice):
- calls unchanged before answer (scheduled/dialing/ringing) for STUCK_DIAL_TIMEOUT_SEC
  and calls in progress with no activity for STUCK_CALL_TIMEOUT_SEC are failed, releasing
  credits, with a summary naming why (`core.domain.stuck_calls`);
- a terminal call whose credit hold is somehow still open gets it released;
- a call whose media session broke and stayed gone past the grace is hung up and settled
  (`core.app.lost_sessions`: normally the replica that saw the break does it; this pass
  covers a replica that died meanwhile);
- expired Idempotency-Keys are deleted, and so are the media replay log and commands of
  calls over for an hour (`core.app.sessions.prune`).
"""

from __future__ import annotations

import asyncio
import logging

from core.app import credits, idempotency, sessions
from core.app.call_status import Change
from core.app.calls import CallService
from core.app.lost_sessions import LostSessions
from core.domain import call_states as st
from core.domain import stuck_calls
from core.domain.errors import CallagentError
from core.store.sql import calls as calls_sql
from core.store.sql import credits as credits_sql

log = logging.getLogger(__name__)

# How long a finished call keeps its media replay log and commands: far beyond the time a
# media pod may still replay to it (its bridge's last flush), short enough to stay small.
SESSION_LOG_KEEP_SEC = 3600.0


async def reconcile_once(
    service: CallService,
    *,
    stuck_dial_sec: float,
    stuck_call_sec: float,
    lost: LostSessions | None = None,
) -> int:
    """Fix what can be fixed now; return the number of calls touched."""
    pool = service.pool
    stuck = await pool.fetch(
        calls_sql.STUCK,
        [st.SCHEDULED, st.DIALING, st.RINGING],
        stuck_dial_sec,
        stuck_call_sec,
    )
    fixed = 0
    for row in stuck:
        summary = stuck_calls.stuck_summary(
            row["status"],
            idle_sec=row["idle_sec"],
            dial_started=row["dial_started"],
            call_sid=row["call_sid"],
            owner_pod=row["owner_pod"],
        )
        try:
            if await service.transition(
                row["call_id"], st.FAILED, Change(outcome_type="failed", outcome_summary=summary)
            ):
                fixed += 1
                log.warning(
                    "reconciler failed a stuck call: %s",
                    summary,
                    extra={"call_id": row["call_id"]},
                )
        except CallagentError:
            continue  # it moved on meanwhile
    orphans = await pool.fetch(credits_sql.ORPHANED_RESERVATIONS, list(st.TERMINAL))
    for row in orphans:
        async with pool.acquire() as conn:
            if await credits.release(conn, row["reservation_id"]):
                fixed += 1
                log.error(
                    "reconciler released a credit hold still open on a %s call",
                    row["status"],
                    extra={"call_id": row["call_id"]},
                )
    if lost is not None:
        fixed += await lost.settle_due()
    await idempotency.sweep(pool)
    await sessions.prune(pool, SESSION_LOG_KEEP_SEC)
    return fixed


async def run_forever(
    service: CallService,
    *,
    interval: float,
    stuck_dial_sec: float,
    stuck_call_sec: float,
    lost: LostSessions | None = None,
) -> None:
    while True:
        try:
            await reconcile_once(
                service, stuck_dial_sec=stuck_dial_sec, stuck_call_sec=stuck_call_sec, lost=lost
            )
        except Exception:
            log.exception("reconciler pass failed; retrying next interval")
        await asyncio.sleep(interval)
