"""Queued mode: 202 with positions, the single drainer, caps at dial time, fail-over, leases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core import main as server
from core.app import api_keys, drainer
from core.domain.tasks import StartRequest
from gateway.app import create_app
from tests.conftest import (
    eventually,
    make_gateway_settings,
    make_settings,
    new_customer,
    serve_asgi,
)
from tests.fakes.telephony import FakeTelephony

BODY = {"target_phone": "+15550100", "brief": "Table for 2 tomorrow at 19:00 under Anna"}


@pytest.fixture
def queue_settings() -> Any:
    return make_settings(call_queue_enabled=True, dial_cps=200, drainer_poll_sec=0.05)


@pytest.fixture
async def qcore(
    db_dsn: str, queue_settings: Any, telephony: FakeTelephony
) -> AsyncIterator[server.Core]:
    running = await server.start(queue_settings, dsn=db_dsn, port=0, telephony=telephony)
    yield running
    await running.stop(grace=1)


@pytest.fixture
async def qhttp(qcore: server.Core) -> AsyncIterator[httpx.AsyncClient]:
    gw = make_gateway_settings(qcore.port)
    async with serve_asgi(create_app(gw)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def key(c: api_keys.CreatedKey) -> dict[str, str]:
    return {"X-API-Key": c.api_key}


async def test_queued_start_is_202_and_drained(
    qhttp: httpx.AsyncClient, qcore: server.Core, telephony: FakeTelephony
) -> None:
    c = await new_customer(qcore.pool)
    response = await qhttp.post("/calls", json=BODY, headers=key(c))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["queue_id"] and body["position"] == 0
    await eventually(lambda: _dialed(telephony, 1))
    assert telephony.dials[0].call_id == body["call_id"]
    got: dict[str, Any] = {}

    async def recorded() -> bool:  # the carrier took the dial; core writes it just after
        got.update((await qhttp.get(f"/calls/{body['call_id']}", headers=key(c))).json())
        return bool(got["status"] != "scheduled")

    await eventually(recorded)
    assert got["status"] == "dialing" and got["call_sid"] == telephony.dials[0].call_sid


async def _dialed(telephony: FakeTelephony, n: int) -> bool:
    return len(telephony.dials) >= n


async def test_positions_count_entries_ahead(
    qhttp: httpx.AsyncClient, qcore: server.Core, telephony: FakeTelephony
) -> None:
    busy = await new_customer(qcore.pool)  # cap 1: its first call blocks the rest
    first = (await qhttp.post("/calls", json=BODY, headers=key(busy))).json()
    await eventually(lambda: _dialed(telephony, 1))
    positions = [
        (await qhttp.post("/calls", json=BODY, headers=key(busy))).json()["position"]
        for _ in range(3)
    ]
    assert positions == [0, 1, 2]
    other = await new_customer(qcore.pool)
    # the capped customer's entries never block another customer
    await qhttp.post("/calls", json=BODY, headers=key(other))
    await eventually(lambda: _dialed(telephony, 2))
    assert telephony.dials[0].call_id == first["call_id"]
    assert len(telephony.dials) == 2


async def test_cap_enforced_at_dial_time_fifo(
    qhttp: httpx.AsyncClient, qcore: server.Core, telephony: FakeTelephony
) -> None:
    a = await new_customer(qcore.pool)
    b = await new_customer(qcore.pool)
    a1 = (await qhttp.post("/calls", json=BODY, headers=key(a))).json()["call_id"]
    a2 = (await qhttp.post("/calls", json=BODY, headers=key(a))).json()["call_id"]
    b1 = (await qhttp.post("/calls", json=BODY, headers=key(b))).json()["call_id"]
    await eventually(lambda: _dialed(telephony, 2))
    assert [d.call_id for d in telephony.dials] == [a1, b1]
    await qcore.calls.transition(a1, "completed")
    await eventually(lambda: _dialed(telephony, 3))
    assert [d.call_id for d in telephony.dials] == [a1, b1, a2]


async def test_cancel_queued_call_leaves_queue_and_releases(
    qhttp: httpx.AsyncClient, qcore: server.Core, telephony: FakeTelephony
) -> None:
    a = await new_customer(qcore.pool)
    await qhttp.post("/calls", json=BODY, headers=key(a))
    await eventually(lambda: _dialed(telephony, 1))
    waiting = (await qhttp.post("/calls", json=BODY, headers=key(a))).json()["call_id"]
    assert (await qhttp.post(f"/calls/{waiting}/cancel", headers=key(a))).json() == {
        "cancelled": True
    }
    state = await qcore.pool.fetchval("SELECT state FROM dial_queue WHERE call_id = $1", waiting)
    assert state == "done"
    usage = await qcore.pool.fetchval(
        "SELECT current_usage FROM customers WHERE customer_id = $1", a.customer_id
    )
    assert usage == 100  # only the first call's hold remains
    await qcore.calls.transition(telephony.dials[0].call_id, "completed")
    # A freed slot makes nothing dialable: the cancelled entry left the queue.
    assert qcore.drainer is not None
    assert await qcore.drainer.drain_once() is None
    assert waiting not in [d.call_id for d in telephony.dials]


async def test_no_409_in_queued_mode(qhttp: httpx.AsyncClient, qcore: server.Core) -> None:
    a = await new_customer(qcore.pool)
    codes = [(await qhttp.post("/calls", json=BODY, headers=key(a))).status_code for _ in range(5)]
    assert codes == [202] * 5


async def test_expired_lease_recovery_never_dials_twice(
    qcore: server.Core, telephony: FakeTelephony, qhttp: httpx.AsyncClient
) -> None:
    a = await new_customer(qcore.pool)
    await qhttp.post("/calls", json=BODY, headers=key(a))
    await eventually(lambda: _dialed(telephony, 1))
    # Two calls a crashed dialer had claimed: one never reached the carrier, one did.
    never = (await qhttp.post("/calls", json=BODY, headers=key(a))).json()["call_id"]
    maybe = (await qhttp.post("/calls", json=BODY, headers=key(a))).json()["call_id"]
    await qcore.pool.execute(
        "UPDATE calls SET status = 'scheduled', dial_started_at = CASE WHEN call_id = $2 "
        "THEN now() END WHERE call_id = ANY($1::text[])",
        [never, maybe],
        maybe,
    )
    await qcore.pool.execute(
        "UPDATE dial_queue SET state = 'warming', lease_until = now() - interval '1 second' "
        "WHERE call_id = ANY($1::text[])",
        [never, maybe],
    )
    assert qcore.drainer is not None
    await qcore.drainer.recover_expired()
    rows = {
        r["call_id"]: r
        for r in await qcore.pool.fetch(
            "SELECT c.call_id, c.status, q.state FROM calls c JOIN dial_queue q USING (call_id)"
        )
    }
    assert rows[never]["status"] == "queued" and rows[never]["state"] == "pending"
    assert rows[maybe]["status"] == "failed" and rows[maybe]["state"] == "done"
    await qcore.calls.transition(telephony.dials[0].call_id, "completed")
    await eventually(lambda: _dialed(telephony, 2))
    assert await qcore.drainer.drain_once() is None  # `maybe` is never offered again
    assert [d.call_id for d in telephony.dials][1:] == [never]


async def test_drainer_failover_dials_each_call_once(db_dsn: str, queue_settings: Any) -> None:
    phones = [FakeTelephony(), FakeTelephony()]
    cores = [await server.start(queue_settings, dsn=db_dsn, port=0, telephony=t) for t in phones]
    try:

        async def one_leader() -> bool:
            return sum(1 for c in cores if c.drainer and c.drainer.is_leader) == 1

        await eventually(one_leader)
        leader = next(i for i, c in enumerate(cores) if c.drainer and c.drainer.is_leader)
        customers = [await new_customer(cores[0].pool) for _ in range(6)]
        await cores[0].pool.execute("UPDATE customers SET max_concurrent_calls = 100")
        for c in customers[:3]:
            await cores[1].calls.start(c.customer_id, StartRequest("+15550100", "first wave"))
        await eventually(lambda: _total(phones, 3))
        # Kill the leader's lock session; the other replica must take over.
        killed = await cores[0].pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE locktype = 'advisory' AND objid = $1 AND granted",
            drainer.LEADER_LOCK_KEY,
        )
        assert killed == 1
        follower = 1 - leader
        await eventually(lambda: _is_leader(cores[follower]))
        for c in customers[3:]:
            await cores[0].calls.start(c.customer_id, StartRequest("+15550100", "second wave"))
        await eventually(lambda: _total(phones, 6))
        for c in cores:  # nothing is left to dial on either replica
            assert c.drainer is not None and await c.drainer.drain_once() is None
        dialed = [d.call_id for t in phones for d in t.dials]
        assert len(dialed) == len(set(dialed)) == 6
        assert len(phones[follower].dials) >= 3
    finally:
        for c in cores:
            await c.stop(grace=1)


async def _total(phones: list[FakeTelephony], n: int) -> bool:
    return sum(len(t.dials) for t in phones) >= n


async def _is_leader(core: server.Core) -> bool:
    return bool(core.drainer and core.drainer.is_leader)


async def test_queued_calls_wait_out_a_maintenance_window(
    qhttp: httpx.AsyncClient, qcore: server.Core, telephony: FakeTelephony
) -> None:
    c = await new_customer(qcore.pool)  # cap 1: the second call waits behind the first
    await qhttp.post("/calls", json=BODY, headers=key(c))
    await eventually(lambda: _dialed(telephony, 1))
    waiting = (await qhttp.post("/calls", json=BODY, headers=key(c))).json()["call_id"]
    await qcore.pool.execute("UPDATE maintenance SET active = true, message = 'carrier upgrade'")
    await qcore.calls.transition(telephony.dials[0].call_id, "completed")  # frees the cap
    assert qcore.drainer is not None
    assert await qcore.drainer.drain_once() is None  # dialable, but not in the window
    status = await qcore.pool.fetchval("SELECT status FROM calls WHERE call_id = $1", waiting)
    assert status == "queued" and len(telephony.dials) == 1
    await qcore.pool.execute("UPDATE maintenance SET active = false, message = ''")
    await eventually(lambda: _dialed(telephony, 2))  # the window is over: dialed
    assert telephony.dials[1].call_id == waiting
