"""Durable call events over gRPC and SSE: backfill + live tail, reconnects, caps, replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from core import main as server
from core.app import api_keys, events
from core.app.call_status import Change
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

FAST = {
    "events_close_after_outcome_sec": 0.3,
    "sse_heartbeat_sec": 0.2,
}


async def read_sse(
    response: httpx.Response, *, limit: int | None = None, pings: list[str] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Parse an SSE body into {id, event, data} dicts (comments go to `pings`)."""
    frame: dict[str, Any] = {}
    count = 0
    async for line in response.aiter_lines():
        if line.startswith(":"):
            if pings is not None:
                pings.append(line)
                yield {"comment": line}
            continue
        if not line:
            if frame:
                yield frame
                count += 1
                frame = {}
                if limit is not None and count >= limit:
                    return
            continue
        field, _, value = line.partition(": ")
        frame[field] = orjson.loads(value) if field == "data" else value


@pytest.fixture
def settings() -> Any:
    return make_settings(**FAST)


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"sse_heartbeat_sec": FAST["sse_heartbeat_sec"]}


async def _start(core: server.Core, customer: api_keys.CreatedKey) -> str:
    started = await core.calls.start(customer.customer_id, StartRequest("+15550100", "hi"))
    return str(started.call["call_id"])


async def _burst(core: server.Core, call_id: str, n: int) -> None:
    for i in range(n):
        async with core.pool.acquire() as conn, conn.transaction():
            await events.append(conn, call_id, "transcript", {"speaker": "callee", "text": str(i)})


async def test_stream_follows_a_call_to_its_end(
    http: httpx.AsyncClient, core: server.Core, customer: api_keys.CreatedKey
) -> None:
    call_id = await _start(core, customer)
    headers = {"X-API-Key": customer.api_key}
    seen: list[dict[str, Any]] = []
    async with http.stream("GET", f"/calls/{call_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")

        async def drive() -> None:
            await eventually(lambda: _has(seen, 2))
            await core.calls.transition(call_id, "in_progress")
            await core.calls.transition(call_id, "completed", Change(duration_sec=30))

        driver = asyncio.create_task(drive())
        async for frame in read_sse(response):  # ends by itself after the outcome
            seen.append(frame)
        await driver
    types = [f["event"] for f in seen]
    # An answered call's merged transcript follows the outcome (live-only here: no
    # Deepgram), and the stream waits for it.
    assert types == ["status", "status", "status", "status", "outcome", "transcript_ready"]
    assert [f["data"]["status"] for f in seen[:4]] == [
        "scheduled",
        "dialing",
        "in_progress",
        "completed",
    ]
    ids = [int(f["id"]) for f in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert seen[-2]["data"]["outcome_charge_cents"] == 10
    assert all(f["data"]["call_id"] == call_id for f in seen)


async def _has(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def test_reconnect_with_last_event_id_mid_burst_sees_each_event_once(
    http: httpx.AsyncClient, core: server.Core, customer: api_keys.CreatedKey
) -> None:
    call_id = await _start(core, customer)
    headers = {"X-API-Key": customer.api_key}
    burst = asyncio.create_task(_burst(core, call_id, 300))
    received: list[int] = []
    last = None
    for _ in range(4):  # disconnect three times in the middle of the burst
        extra = {"Last-Event-ID": last} if last else {}
        async with http.stream(
            "GET", f"/calls/{call_id}/events", headers={**headers, **extra}
        ) as response:
            async for frame in read_sse(response, limit=60):
                received.append(int(frame["id"]))
                last = frame["id"]
    await burst
    async with http.stream(
        "GET", f"/calls/{call_id}/events", headers={**headers, "Last-Event-ID": str(last)}
    ) as response:
        total = await core.pool.fetchval(
            "SELECT count(*) FROM call_events WHERE call_id = $1", call_id
        )
        remaining = total - len(received)
        if remaining:
            async for frame in read_sse(response, limit=remaining):
                received.append(int(frame["id"]))
    expected = [
        r["event_id"]
        for r in await core.pool.fetch(
            "SELECT event_id FROM call_events WHERE call_id = $1 ORDER BY event_id", call_id
        )
    ]
    assert received == expected


async def test_heartbeat_and_disconnect_frees_the_stream(
    http: httpx.AsyncClient,
    core: server.Core,
    customer: api_keys.CreatedKey,
    gateway_url: str,
) -> None:
    call_id = await _start(core, customer)
    pings: list[str] = []
    async with http.stream(
        "GET", f"/calls/{call_id}/events", headers={"X-API-Key": customer.api_key}
    ) as response:
        frames = read_sse(response, pings=pings)
        kinds = [await anext(frames) for _ in range(3)]  # two status events, then a ping
    assert [k.get("event") for k in kinds[:2]] == ["status", "status"]
    assert kinds[2] == {"comment": ": ping"}

    async def freed() -> bool:
        return core.broker.subscriber_count == 0

    await eventually(freed)


async def test_foreign_and_missing_calls_are_identical_404(
    http: httpx.AsyncClient, core: server.Core, customer: api_keys.CreatedKey
) -> None:
    call_id = await _start(core, customer)
    other = await new_customer(core.pool)
    foreign = await http.get(f"/calls/{call_id}/events", headers={"X-API-Key": other.api_key})
    missing = await http.get("/calls/call_nope/events", headers={"X-API-Key": other.api_key})
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    unauth = await http.get(f"/calls/{call_id}/events")
    assert unauth.status_code == 401
    bad = await http.get(
        f"/calls/{call_id}/events",
        headers={"X-API-Key": customer.api_key, "Last-Event-ID": "abc"},
    )
    assert bad.status_code == 400


async def test_stream_cap_is_a_clear_503(core: server.Core) -> None:
    customer = await new_customer(core.pool)
    call_id = await _start(core, customer)
    gw = make_gateway_settings(
        core.port, sse_max_streams=1, sse_heartbeat_sec=FAST["sse_heartbeat_sec"]
    )
    headers = {"X-API-Key": customer.api_key}
    async with serve_asgi(create_app(gw)) as url, httpx.AsyncClient(base_url=url) as client:
        async with client.stream("GET", f"/calls/{call_id}/events", headers=headers) as first:
            assert first.status_code == 200
            second = await client.get(f"/calls/{call_id}/events", headers=headers)
            assert second.status_code == 503
            assert second.json()["detail"]["code"] == "STREAM_LIMIT"

        # the slot is given back once the first client leaves
        async def reopened() -> bool:
            async with client.stream("GET", f"/calls/{call_id}/events", headers=headers) as r:
                return r.status_code == 200

        await eventually(reopened)


async def test_events_cross_replicas(db_dsn: str) -> None:
    settings = make_settings(**FAST)
    a = await server.start(settings, dsn=db_dsn, port=0, telephony=FakeTelephony())
    b = await server.start(settings, dsn=db_dsn, port=0, telephony=FakeTelephony())
    try:
        customer = await new_customer(a.pool)
        call_id = await _start(a, customer)
        gw = make_gateway_settings(a.port, sse_heartbeat_sec=FAST["sse_heartbeat_sec"])
        async with (
            serve_asgi(create_app(gw)) as url,
            httpx.AsyncClient(base_url=url) as client,
            client.stream(
                "GET", f"/calls/{call_id}/events", headers={"X-API-Key": customer.api_key}
            ) as response,
        ):
            frames = read_sse(response)
            assert (await anext(frames))["data"]["status"] == "scheduled"
            assert (await anext(frames))["data"]["status"] == "dialing"
            await _burst(b, call_id, 5)  # written through the other replica
            texts = [(await anext(frames))["data"]["text"] for _ in range(5)]
            assert texts == ["0", "1", "2", "3", "4"]
    finally:
        await a.stop(grace=0)
        await b.stop(grace=0)


async def _finished_call(core: server.Core, customer: api_keys.CreatedKey) -> tuple[str, int]:
    """A completed call whose merged transcript is ready, and the id of its outcome event."""
    call_id = await _start(core, customer)
    await core.calls.transition(call_id, "in_progress")
    await core.calls.transition(call_id, "completed", Change(duration_sec=30))

    async def merged() -> bool:
        return bool(
            await core.pool.fetchval(
                "SELECT count(*) FROM call_events WHERE call_id = $1 AND type = $2",
                call_id,
                "transcript_ready",
            )
        )

    await eventually(merged)
    outcome_id = await core.pool.fetchval(
        "SELECT event_id FROM call_events WHERE call_id = $1 AND type = 'outcome'", call_id
    )
    return call_id, int(outcome_id)


@pytest.mark.parametrize("resume", ["at_outcome", "at_last", "beyond_last"])
async def test_reconnect_at_or_past_the_outcome_closes_after_the_linger(
    http: httpx.AsyncClient, core: server.Core, customer: api_keys.CreatedKey, resume: str
) -> None:
    call_id, outcome_id = await _finished_call(core, customer)
    await _burst(core, call_id, 1)  # a late event after the outcome (e.g. recording_ready)
    late_id = await core.pool.fetchval(
        "SELECT max(event_id) FROM call_events WHERE call_id = $1", call_id
    )
    last = {"at_outcome": outcome_id, "at_last": late_id, "beyond_last": late_id + 1000}[resume]
    after = await core.pool.fetch(
        "SELECT event_id FROM call_events WHERE call_id = $1 AND event_id > $2 ORDER BY 1",
        call_id,
        last,
    )
    headers = {"X-API-Key": customer.api_key, "Last-Event-ID": str(last)}
    frames: list[dict[str, Any]] = []
    # The cap is 30 min: only the linger can end this stream within the timeout.
    async with asyncio.timeout(10):
        async with http.stream("GET", f"/calls/{call_id}/events", headers=headers) as response:
            assert response.status_code == 200
            frames = [f async for f in read_sse(response)]
    assert [int(f["id"]) for f in frames] == [r["event_id"] for r in after]
    assert bool(after) == (resume == "at_outcome")  # transcript_ready and the late event


async def test_reconnect_before_the_outcome_still_sees_it_and_closes(
    http: httpx.AsyncClient, core: server.Core, customer: api_keys.CreatedKey
) -> None:
    call_id, outcome_id = await _finished_call(core, customer)
    headers = {"X-API-Key": customer.api_key, "Last-Event-ID": str(outcome_id - 1)}
    async with asyncio.timeout(10):
        async with http.stream("GET", f"/calls/{call_id}/events", headers=headers) as response:
            frames = [f async for f in read_sse(response)]
    assert [f["event"] for f in frames] == ["outcome", "transcript_ready"]


async def test_auth_and_ownership_come_before_the_stream_cap(core: server.Core) -> None:
    customer = await new_customer(core.pool)
    other = await new_customer(core.pool)
    call_id = await _start(core, customer)
    gw = make_gateway_settings(
        core.port, sse_max_streams=1, sse_heartbeat_sec=FAST["sse_heartbeat_sec"]
    )
    headers = {"X-API-Key": customer.api_key}
    async with serve_asgi(create_app(gw)) as url, httpx.AsyncClient(base_url=url) as client:
        async with client.stream("GET", f"/calls/{call_id}/events", headers=headers) as first:
            assert first.status_code == 200  # the only slot is taken
            unauth = await client.get(f"/calls/{call_id}/events")
            wrong_key = await client.get(
                f"/calls/{call_id}/events", headers={"X-API-Key": "ca_wrong"}
            )
            foreign = await client.get(
                f"/calls/{call_id}/events", headers={"X-API-Key": other.api_key}
            )
            assert unauth.status_code == wrong_key.status_code == 401
            assert foreign.status_code == 404
            full = await client.get(f"/calls/{call_id}/events", headers=headers)
            assert full.status_code == 503
            assert full.json()["detail"]["code"] == "STREAM_LIMIT"


async def test_an_error_inside_the_stream_carries_the_contracts_code(db_dsn: str) -> None:
    solo = await server.start(make_settings(**FAST), dsn=db_dsn, port=0, telephony=FakeTelephony())
    stopped = False
    try:
        customer = await new_customer(solo.pool)
        call_id = await _start(solo, customer)
        gw = make_gateway_settings(solo.port, sse_heartbeat_sec=FAST["sse_heartbeat_sec"])
        async with (
            serve_asgi(create_app(gw)) as url,
            httpx.AsyncClient(base_url=url) as client,
            client.stream(
                "GET", f"/calls/{call_id}/events", headers={"X-API-Key": customer.api_key}
            ) as response,
        ):
            frames = read_sse(response)
            assert (await anext(frames))["event"] == "status"
            await solo.stop(grace=0)  # core goes away under a started stream
            stopped = True
            async with asyncio.timeout(10):
                rest = [f async for f in frames if "event" in f]
        errors = [f for f in rest if f["event"] == "error"]
        assert len(errors) == 1 and errors[-1] is rest[-1]
        # Not a gRPC code name (UNAVAILABLE, CANCELLED): the contract's own codes.
        assert errors[0]["data"]["code"] in {"CORE_UNAVAILABLE", "CORE_CANCELLED"}
        assert errors[0]["data"]["message"]
    finally:
        if not stopped:
            await solo.stop(grace=0)
