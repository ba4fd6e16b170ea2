"""The reconciler fails stuck calls with a summary naming the true reason, and releases
credit holds left open on finished calls; each case is set up in the call row itself."""

from __future__ import annotations

import logging
import re
import uuid

import pytest

from core import main as server
from core.app import reconciler
from core.domain.tasks import StartRequest
from tests.conftest import new_customer

IDLE_SEC = 3600


async def _started_call(core: server.Core) -> tuple[str, str]:
    customer = await new_customer(core.pool)
    started = await core.calls.start(customer.customer_id, StartRequest("+15550100", "hello"))
    return started.call["call_id"], customer.customer_id


async def _make_stuck(
    core: server.Core,
    call_id: str,
    *,
    status: str,
    call_sid: str | None,
    owner_pod: str | None,
    dial_started: bool,
    idle_sec: int = IDLE_SEC,
) -> None:
    await core.pool.execute(
        """UPDATE calls SET status = $2, call_sid = $3, owner_pod = $4,
               dial_started_at = CASE WHEN $5 THEN now() - make_interval(secs => $6) END,
               started_at = CASE WHEN $2 = 'in_progress' THEN now() - make_interval(secs => $6)
                            END,
               updated_at = now() - make_interval(secs => $6)
           WHERE call_id = $1""",
        call_id,
        status,
        call_sid,
        owner_pod,
        dial_started,
        float(idle_sec),
    )


async def _reconcile(core: server.Core) -> int:
    return await reconciler.reconcile_once(core.calls, stuck_dial_sec=600, stuck_call_sec=600)


def _sid() -> str:
    return "CA" + uuid.uuid4().hex


@pytest.mark.parametrize(
    ("status", "has_sid", "owner_pod", "dial_started", "expected"),
    [
        ("scheduled", False, None, False, r"never dialed: scheduled for (\d+) s without a dial"),
        (
            "dialing",
            False,
            None,
            True,
            r"the carrier never acknowledged the dial \(no call sid after (\d+) s\)",
        ),
        ("dialing", True, None, True, r"no carrier progress for (\d+) s while dialing"),
        ("ringing", True, None, True, r"no carrier progress for (\d+) s while ringing"),
        (
            "in_progress",
            True,
            None,
            True,
            r"answered, but no media session ever attached \(no activity for (\d+) s\)",
        ),
        (
            "in_progress",
            True,
            "media-7",
            True,
            r"no media or carrier activity for (\d+) s; the media session on pod media-7 "
            r"is presumed gone",
        ),
    ],
)
async def test_a_stuck_call_is_failed_with_its_true_reason(
    core: server.Core,
    caplog: pytest.LogCaptureFixture,
    status: str,
    has_sid: bool,
    owner_pod: str | None,
    dial_started: bool,
    expected: str,
) -> None:
    call_id, customer_id = await _started_call(core)
    await _make_stuck(
        core,
        call_id,
        status=status,
        call_sid=_sid() if has_sid else None,
        owner_pod=owner_pod,
        dial_started=dial_started,
    )
    caplog.set_level(logging.WARNING, logger="core.app.reconciler")

    assert await _reconcile(core) == 1

    row = await core.pool.fetchrow(
        "SELECT status, outcome_type, outcome_summary FROM calls WHERE call_id = $1", call_id
    )
    assert row is not None and row["status"] == "failed" and row["outcome_type"] == "failed"
    summary = row["outcome_summary"]
    found = re.search(expected, summary)
    assert found is not None, summary
    assert IDLE_SEC <= int(found.group(1)) < IDLE_SEC + 60
    assert summary.endswith("; closed by the reconciler")
    assert "maximum duration" not in summary
    assert [r.getMessage() for r in caplog.records] == [
        f"reconciler failed a stuck call: {summary}"
    ]
    usage = await core.pool.fetchval(
        "SELECT current_usage FROM customers WHERE customer_id = $1", customer_id
    )
    assert usage == 0  # the hold was released


async def test_calls_with_recent_activity_are_left_alone(core: server.Core) -> None:
    live, _ = await _started_call(core)
    ringing, _ = await _started_call(core)
    await _make_stuck(
        core,
        live,
        status="in_progress",
        call_sid=_sid(),
        owner_pod="m",
        dial_started=True,
        idle_sec=5,
    )
    await _make_stuck(
        core,
        ringing,
        status="ringing",
        call_sid=_sid(),
        owner_pod=None,
        dial_started=True,
        idle_sec=5,
    )

    assert await _reconcile(core) == 0
    statuses = await core.pool.fetch(
        "SELECT status FROM calls WHERE call_id = ANY($1::text[]) ORDER BY status",
        [live, ringing],
    )
    assert [r["status"] for r in statuses] == ["in_progress", "ringing"]


async def test_a_credit_hold_left_open_on_a_finished_call_is_released(
    core: server.Core, caplog: pytest.LogCaptureFixture
) -> None:
    call_id, customer_id = await _started_call(core)
    # A finished call whose hold was never settled (what a crash between the two leaves).
    await core.pool.execute("UPDATE calls SET status = 'busy' WHERE call_id = $1", call_id)
    caplog.set_level(logging.WARNING, logger="core.app.reconciler")

    assert await _reconcile(core) == 1

    hold = await core.pool.fetchval(
        "SELECT status FROM credit_reservations WHERE call_id = $1", call_id
    )
    assert hold == "released"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "reconciler released a credit hold still open on a busy call")
    ]
    usage = await core.pool.fetchval(
        "SELECT current_usage FROM customers WHERE customer_id = $1", customer_id
    )
    assert usage == 0


async def test_the_replay_log_of_a_call_over_for_an_hour_is_pruned(core: server.Core) -> None:
    old, _ = await _started_call(core)
    live, _ = await _started_call(core)
    for call_id in (old, live):
        await core.pool.execute(
            "INSERT INTO session_reports (call_id, seq) VALUES ($1, 1), ($1, 2)", call_id
        )
        await core.pool.execute(
            "INSERT INTO session_commands (call_id, kind, reason) VALUES ($1, 'hang_up', 'x')",
            call_id,
        )
    await core.pool.execute(
        """UPDATE calls SET status = 'failed', ended_at = now() - make_interval(secs => $2)
           WHERE call_id = $1""",
        old,
        reconciler.SESSION_LOG_KEEP_SEC + 60,
    )
    await _reconcile(core)
    left = """SELECT (SELECT count(*) FROM session_reports WHERE call_id = $1),
                     (SELECT count(*) FROM session_commands WHERE call_id = $1)"""
    assert tuple(await core.pool.fetchrow(left, old)) == (0, 0)
    assert tuple(await core.pool.fetchrow(left, live)) == (2, 1)
