"""Finishes what a crash left behind, so no reservation stays open for a dead call.

Runs at core start-up and then periodically on every replica (each fix is a
row-locked state transition, so replicas racing each other change nothing twice):
- calls stuck before answer (scheduled/dialing/ringing) longer than STUCK_DIAL_TIMEOUT_SEC
  and calls in progress longer than STUCK_CALL_TIMEOUT_SEC are failed, releasing credits;
- a terminal call whose reservation is somehow still open gets it released;
- expired Idempotency-Keys are deleted.
"""

from __future__ import annotations

import asyncio
import logging

from core.app import credits, idempotency
from core.app.calls import CallService, Change
from core.domain import call_states as st
from core.domain.errors import CallagentError

log = logging.getLogger(__name__)


async def reconcile_once(
    service: CallService, *, stuck_dial_sec: float, stuck_call_sec: float
) -> int:
    """Fix what can be fixed now; return the number of calls touched."""
    pool = service.pool
    stuck = await pool.fetch(
        """SELECT call_id, status FROM calls
           WHERE (status = ANY($1::text[]) AND updated_at < now() - make_interval(secs => $2))
              OR (status = 'in_progress' AND updated_at < now() - make_interval(secs => $3))""",
        [st.SCHEDULED, st.DIALING, st.RINGING],
        stuck_dial_sec,
        stuck_call_sec,
    )
    fixed = 0
    for row in stuck:
        summary = (
            "no word from the carrier; the call was closed by the reconciler"
            if row["status"] != st.IN_PROGRESS
            else "the call outlived the maximum duration; closed by the reconciler"
        )
        try:
            if await service.transition(
                row["call_id"], st.FAILED, Change(outcome_type="failed", outcome_summary=summary)
            ):
                fixed += 1
                log.warning("reconciled a stuck call", extra={"call_id": row["call_id"]})
        except CallagentError:
            continue  # it moved on meanwhile
    orphans = await pool.fetch(
        """SELECT r.reservation_id, r.call_id FROM credit_reservations r
           JOIN calls c USING (call_id)
           WHERE r.status = 'open' AND c.status = ANY($1::text[])""",
        list(st.TERMINAL),
    )
    for row in orphans:
        async with pool.acquire() as conn:
            if await credits.release(conn, row["reservation_id"]):
                fixed += 1
                log.error("released an orphaned reservation", extra={"call_id": row["call_id"]})
    await idempotency.sweep(pool)
    return fixed


async def run_forever(
    service: CallService, *, interval: float, stuck_dial_sec: float, stuck_call_sec: float
) -> None:
    while True:
        try:
            await reconcile_once(
                service, stuck_dial_sec=stuck_dial_sec, stuck_call_sec=stuck_call_sec
            )
        except Exception:
            log.exception("reconciler pass failed; retrying next interval")
        await asyncio.sleep(interval)
