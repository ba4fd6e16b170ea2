"""Credits over whole call lives: after any sequence of starts, cancels, dial failures,
carrier events and core restarts, no reservation stays open for a terminal call and
usage always equals the ledger."""

from __future__ import annotations

import random
from typing import Any

import asyncpg

from core import main as server
from core.app.provider_events import ProviderEvent, apply_provider_event
from core.domain.errors import CallagentError
from core.domain.tasks import StartRequest
from tests.conftest import make_settings, new_customer
from tests.fakes.telephony import FakeTelephony

STATUSES = ["ringing", "in_progress", "completed", "busy", "no_answer", "failed", "cancelled"]


async def _check_ledger(pool: asyncpg.Pool[Any]) -> None:
    rows = await pool.fetch(
        """SELECT c.customer_id, c.current_usage,
                  (SELECT coalesce(sum(amount), 0) FROM credit_reservations r
                   WHERE r.customer_id = c.customer_id AND r.status = 'open')
                + (SELECT coalesce(sum(captured_amount), 0) FROM credit_reservations r
                   WHERE r.customer_id = c.customer_id AND r.status = 'captured') AS ledger
           FROM customers c"""
    )
    for row in rows:
        assert row["current_usage"] == row["ledger"], dict(row)
    leaked = await pool.fetchval(
        """SELECT count(*) FROM credit_reservations r JOIN calls c USING (call_id)
           WHERE r.status = 'open'
             AND c.status IN ('completed', 'busy', 'no_answer', 'failed', 'cancelled')"""
    )
    assert leaked == 0
    settled_twice = await pool.fetchval(
        "SELECT count(*) FROM (SELECT call_id FROM credit_reservations GROUP BY call_id "
        "HAVING count(*) > 1) d"
    )
    assert settled_twice == 0
    charges = await pool.fetch(
        """SELECT c.outcome_charge_cents, r.captured_amount, r.status FROM calls c
           JOIN credit_reservations r USING (call_id) WHERE c.status = 'completed'"""
    )
    for row in charges:
        assert row["status"] == "captured"
        assert row["outcome_charge_cents"] == row["captured_amount"]


async def test_randomized_sequence_with_restarts(db_dsn: str) -> None:
    rng = random.Random(20261129)
    telephony = FakeTelephony()
    settings = make_settings(stuck_dial_timeout_sec=3600, stuck_call_timeout_sec=3600)
    core = await server.start(settings, dsn=db_dsn, port=0, telephony=telephony)
    customers = [await new_customer(core.pool, quota=5000) for _ in range(3)]
    await core.pool.execute("UPDATE customers SET max_concurrent_calls = 4")
    call_ids: list[str] = []
    try:
        for step in range(150):
            action = rng.random()
            customer = rng.choice(customers)
            try:
                if action < 0.35:
                    if rng.random() < 0.15:
                        telephony.fail_next_dial(retryable=rng.random() < 0.5)
                    started = await core.calls.start(
                        customer.customer_id, StartRequest("+15550100", f"step {step}")
                    )
                    call_ids.append(started.call["call_id"])
                elif action < 0.5 and call_ids:
                    await core.calls.cancel(customer.customer_id, rng.choice(call_ids))
                elif action < 0.95 and call_ids:
                    call_id = rng.choice(call_ids)
                    sid = await core.pool.fetchval(
                        "SELECT call_sid FROM calls WHERE call_id = $1", call_id
                    )
                    if sid:
                        # What media did on the call decides what `completed` does: nothing
                        # (failed), attached only (it waits), attached and reported (charged).
                        media = rng.choice(["none", "attached", "reported"])
                        await core.pool.execute(
                            """UPDATE calls SET media_session_seq = media_session_seq + 1,
                                   outcome = coalesce(outcome, CASE WHEN $2 THEN '{}'::jsonb END)
                               WHERE call_id = $1 AND $3""",
                            call_id,
                            media == "reported",
                            media != "none",
                        )
                        await apply_provider_event(
                            core.calls,
                            ProviderEvent(
                                kind="status",
                                call_sid=sid,
                                status=rng.choice(STATUSES),
                                duration_sec=rng.uniform(0, 900),
                            ),
                        )
                else:
                    await core.stop(grace=0)  # a restart in the middle of everything
                    core = await server.start(settings, dsn=db_dsn, port=0, telephony=telephony)
            except CallagentError as err:
                assert err.reason in {"CONCURRENCY_LIMIT", "QUOTA_EXCEEDED", "DIAL_FAILED"}
            await _check_ledger(core.pool)
        assert len(call_ids) > 20
    finally:
        await core.stop(grace=0)
    # A restart after the timeouts: the reconciler closes every unfinished call.
    final = make_settings(stuck_dial_timeout_sec=0.001, stuck_call_timeout_sec=0.001)
    core = await server.start(final, dsn=db_dsn, port=0, telephony=telephony)
    try:
        unfinished = await core.pool.fetchval(
            "SELECT count(*) FROM calls WHERE status NOT IN "
            "('completed', 'busy', 'no_answer', 'failed', 'cancelled')"
        )
        assert unfinished == 0
        assert (
            await core.pool.fetchval(
                "SELECT count(*) FROM credit_reservations WHERE status = 'open'"
            )
            == 0
        )
        await _check_ledger(core.pool)
        usage = await core.pool.fetchval("SELECT sum(current_usage) FROM customers")
        captured = await core.pool.fetchval(
            "SELECT coalesce(sum(outcome_charge_cents), 0) FROM calls"
        )
        assert usage == captured
    finally:
        await core.stop(grace=0)


async def test_reconciler_fails_stuck_calls_and_releases(db_dsn: str) -> None:
    telephony = FakeTelephony()
    core = await server.start(make_settings(), dsn=db_dsn, port=0, telephony=telephony)
    c = await new_customer(core.pool)
    started = await core.calls.start(c.customer_id, StartRequest("+15550100", "hello"))
    await core.stop(grace=0)
    stale = make_settings(stuck_dial_timeout_sec=0.001)
    core = await server.start(stale, dsn=db_dsn, port=0, telephony=telephony)
    try:
        row = await core.pool.fetchrow(
            "SELECT status, outcome_summary FROM calls WHERE call_id = $1",
            started.call["call_id"],
        )
        assert row is not None and row["status"] == "failed"
        assert "reconciler" in row["outcome_summary"]
        assert (
            await core.pool.fetchval(
                "SELECT current_usage FROM customers WHERE customer_id = $1", c.customer_id
            )
            == 0
        )
    finally:
        await core.stop(grace=0)
