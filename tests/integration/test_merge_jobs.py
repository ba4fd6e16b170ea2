"""The merged-transcript job end to end inside core: a real core and PostgreSQL, the
carrier's recording through the telephony port, Deepgram's batch API played by the sim's
stand-in through deepgram-sdk. The job waits for the recording, merges, retries Deepgram's
overload, falls back to the live lines when it must, and survives a core that died holding
its lease; the event stream stays open for `transcript_ready`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
from callagent.v1 import media_pb2
from pydantic import SecretStr

from core import main as server
from core.app import api_keys, merges, recordings
from core.app.call_status import Change
from core.app.calls import CallService
from core.domain.tasks import StartRequest
from core.settings import Settings
from core.store.sql import calls as calls_sql
from core.store.sql import merges as merges_sql
from gateway.app import create_app
from sim.deepgram_server import FakeDeepgram
from sim.world import World, WorldTranscripts
from tests.conftest import (
    eventually,
    make_gateway_settings,
    make_settings,
    new_customer,
    serve_asgi,
)
from tests.fakes.telephony import FakeTelephony
from tests.integration.test_ask_user import session
from tests.integration.test_calls_api import BODY, key, report
from tests.integration.test_events_sse import read_sse

DG_KEY = "merge-jobs-deepgram-key"
MP3 = b"\xff\xfb\x90\x00" + b"merge-jobs recording" * 50
DELTA_MS = 1200  # the recording clock runs this far ahead of the media clock

# What media reported live (media clock), and what the recording holds (recording clock).
LIVE = [
    ("agent", "Hello, I'd like a table for two.", 500, "gemini"),
    ("callee", "Yes, what time?", 3050, "supervisor_stt"),
    ("agent", "At seven, under Anna.", 5000, "gemini"),
]
HEARD = [
    ("Hello,", 1.70, 1.95),
    ("I'd", 2.00, 2.15),
    ("like", 2.20, 2.40),
    ("a", 2.45, 2.50),
    ("table", 2.55, 2.80),
    ("for", 2.85, 2.95),
    ("two.", 3.00, 3.30),
    ("At", 6.20, 6.30),
    ("seven,", 6.35, 6.70),
    ("under", 6.80, 7.00),
    ("Anna.", 7.05, 7.40),
]


@contextlib.asynccontextmanager
async def gateway(core: server.Core) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_asgi(create_app(make_gateway_settings(core.port))) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield http


@pytest.fixture
async def deepgram() -> AsyncIterator[FakeDeepgram]:
    world = World()
    world.add_recording(MP3, HEARD)
    async with FakeDeepgram(DG_KEY, source=WorldTranscripts(world)) as fake:
        yield fake


def merge_settings(deepgram: FakeDeepgram, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "deepgram_api_key": SecretStr(DG_KEY),
        "deepgram_http_base": deepgram.http_base,
        "merge_recording_wait_sec": 30,
        "merge_backoff_base_sec": 0.05,
        "merge_poll_sec": 0.05,
        "events_close_after_outcome_sec": 0.3,
    }
    return make_settings(**(values | overrides))


@pytest.fixture
def settings(deepgram: FakeDeepgram) -> Settings:
    return merge_settings(deepgram)


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"sse_heartbeat_sec": 0.2}


async def answered_call(
    http: httpx.AsyncClient, core: server.Core, channel: grpc.aio.Channel, customer: Any
) -> tuple[str, str]:
    """A call that was answered and said LIVE, then completed; (call_id, call_sid)."""
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    call_id, sid = call["call_id"], call["call_sid"]
    assert await report(channel, kind="status", call_sid=sid, status="in_progress")
    async with session(core, call_id) as media:
        await media.next()
        for speaker, text, offset, source in LIVE:
            line = media_pb2.TranscriptLine(
                speaker=speaker, text=text, final=True, offset_ms=offset, source=source
            )
            media.send(transcript=line)

        async def stored() -> bool:
            row = await core.pool.fetchval(
                "SELECT jsonb_array_length(transcript_full) FROM calls WHERE call_id = $1", call_id
            )
            return bool(row == len(LIVE))

        await eventually(stored)
        media.hung_up()
    assert await report(channel, kind="status", call_sid=sid, status="completed", duration_sec=9)
    return call_id, sid


async def merged(http: httpx.AsyncClient, call_id: str, customer: Any) -> dict[str, Any]:
    """The merged transcript once it is ready (202 until then)."""
    found: dict[str, Any] = {}

    async def ready() -> bool:
        got = await http.get(f"/calls/{call_id}/transcript-merged", headers=key(customer))
        assert got.status_code in (200, 202), got.text
        if got.status_code == 200:
            found.update(got.json())
        return got.status_code == 200

    await eventually(ready, limit=20)
    return found


async def event_types(core: server.Core, call_id: str) -> list[str]:
    rows = await core.pool.fetch(
        "SELECT type FROM call_events WHERE call_id = $1 ORDER BY event_id", call_id
    )
    return [r["type"] for r in rows]


def recording_callback(sid: str, recording_sid: str) -> dict[str, Any]:
    return {
        "kind": "recording",
        "call_sid": sid,
        "recording_sid": recording_sid,
        "recording_url": f"https://carrier.invalid/Recordings/{recording_sid}",
        "recording_duration_sec": 9,
        "recording_status": "completed",
    }


async def test_the_recording_callback_starts_the_merge(
    http: httpx.AsyncClient,
    core: server.Core,
    channel: grpc.aio.Channel,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
    deepgram: FakeDeepgram,
) -> None:
    call_id, sid = await answered_call(http, core, channel, customer)
    pending = await http.get(f"/calls/{call_id}/transcript-merged", headers=key(customer))
    assert pending.status_code == 202 and pending.json() == {"status": "merger_pending"}
    assert deepgram.batch_requests == []  # it waits for the recording

    recording_sid = telephony.add_recording(sid, MP3, duration_sec=9)
    assert await report(channel, **recording_callback(sid, recording_sid))
    body = await merged(http, call_id, customer)

    assert body["merge"] == "recording" and body["degraded"] is False
    assert body["calibration_delta_ms"] is not None
    assert abs(body["calibration_delta_ms"] - DELTA_MS) <= 50
    turns = [(t["speaker"], t["start_ms"], t["text"]) for t in body["turns"]]
    assert turns == [
        ("agent", 1700, "Hello, I'd like a table for two."),
        ("callee", pytest.approx(3050 + DELTA_MS, abs=50), "Yes, what time?"),
        ("agent", 6200, "At seven, under Anna."),
    ]
    first = body["turns"][0]["words"][0]
    assert (first["word"], first["start_ms"], first["end_ms"]) == ("Hello,", 1700, 1950)
    assert 0 < first["confidence"] <= 1  # Deepgram's own, carried through
    # deepgram-sdk sent what Deepgram's pre-recorded API takes: the bytes, word timings on
    (request,) = deepgram.batch_requests
    assert request.body == MP3 and request.query["utterances"] == ["true"]
    # The recording's seconds sent to Deepgram's batch API are part of the call's cost.
    assert await batch_seconds(http, call_id, customer) == 9
    types = await event_types(core, call_id)
    assert types.count("transcript_ready") == 1
    assert types.index("outcome") < types.index("recording_ready") < types.index("transcript_ready")
    ready = await core.pool.fetchval(
        "SELECT payload FROM call_events WHERE call_id = $1 AND type = 'transcript_ready'", call_id
    )
    assert ready == {
        "transcript_url": f"/calls/{call_id}/transcript-merged",
        "degraded": False,
        "turns": 3,
    }
    other = await new_customer(core.pool)
    foreign = await http.get(f"/calls/{call_id}/transcript-merged", headers=key(other))
    missing = await http.get("/calls/call_nope/transcript-merged", headers=key(customer))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content


@pytest.fixture
def impatient(deepgram: FakeDeepgram) -> Settings:
    return merge_settings(deepgram, merge_recording_wait_sec=0.2)


async def test_without_a_callback_the_carrier_is_asked(
    db_dsn: str,
    impatient: Settings,
    telephony: FakeTelephony,
    deepgram: FakeDeepgram,
) -> None:
    """The recording callback was lost: after the wait the job looks the recording up
    itself, stores and announces it as the callback would have, and merges."""
    core = await server.start(impatient, dsn=db_dsn, port=0, telephony=telephony)
    try:
        customer = await new_customer(core.pool)
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel,
            gateway(core) as http,
        ):
            call_id, sid = await answered_call(http, core, channel, customer)
            telephony.add_recording(sid, MP3, duration_sec=9)
            body = await merged(http, call_id, customer)
        assert body["merge"] == "recording"
        types = await event_types(core, call_id)
        assert types.count("recording_ready") == 1 and types.count("transcript_ready") == 1
    finally:
        await core.stop(grace=1)


async def test_deepgram_overload_is_retried(
    http: httpx.AsyncClient,
    core: server.Core,
    channel: grpc.aio.Channel,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
    deepgram: FakeDeepgram,
) -> None:
    deepgram.batch_failures = [429, 503]
    call_id, sid = await answered_call(http, core, channel, customer)
    recording_sid = telephony.add_recording(sid, MP3, duration_sec=9)
    assert await report(channel, **recording_callback(sid, recording_sid))
    body = await merged(http, call_id, customer)
    assert body["merge"] == "recording" and len(deepgram.batch_requests) == 3
    attempts = await core.pool.fetchval(
        "SELECT attempts FROM transcript_merges WHERE call_id = $1", call_id
    )
    assert attempts == 3
    assert await batch_seconds(http, call_id, customer) == 9  # refused tries are not billed


async def batch_seconds(
    http: httpx.AsyncClient, call_id: str, customer: api_keys.CreatedKey
) -> float | None:
    """The batch_audio seconds of the call's cost breakdown (None: no such line)."""
    got = await http.get(f"/calls/{call_id}", headers=key(customer))
    lines = got.json()["cost_breakdown"]["lines"]
    return next((x["quantity"] for x in lines if x["item"] == "batch_audio"), None)


async def test_deepgram_failing_for_good_falls_back_to_the_live_lines(
    http: httpx.AsyncClient,
    core: server.Core,
    channel: grpc.aio.Channel,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
    deepgram: FakeDeepgram,
) -> None:
    deepgram.batch_failures = [500] * 5  # MERGE_ATTEMPTS tries, each refused
    call_id, sid = await answered_call(http, core, channel, customer)
    recording_sid = telephony.add_recording(sid, MP3, duration_sec=9)
    assert await report(channel, **recording_callback(sid, recording_sid))
    body = await merged(http, call_id, customer)
    assert body["degraded"] is True and body["merge"] == "live_only"
    assert "HTTP 500" in body["degraded_reason"]
    assert [t["text"] for t in body["turns"]] == [text for _, text, _, _ in LIVE]
    assert len(deepgram.batch_requests) == 5
    ready = await core.pool.fetchval(
        "SELECT payload FROM call_events WHERE call_id = $1 AND type = 'transcript_ready'", call_id
    )
    assert ready["degraded"] is True


async def test_a_job_held_by_a_dead_core_is_taken_over(
    http: httpx.AsyncClient,
    core: server.Core,
    db_dsn: str,
    channel: grpc.aio.Channel,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
    deepgram: FakeDeepgram,
) -> None:
    """A core claimed the job and died before finishing (its lease still stands): the job
    is neither lost nor run twice; another core takes it once the lease expires."""
    call_id, sid = await answered_call(http, core, channel, customer)
    recording_sid = telephony.add_recording(sid, MP3, duration_sec=9)
    await core.stop(grace=1)  # this core is gone; its pending job stays in PostgreSQL
    # What a crashed claimer leaves behind: a claim with a lease nobody will release.
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(
            "UPDATE transcript_merges SET attempts = 1, not_before = now(),"
            " lease_until = now() + interval '1 second' WHERE call_id = $1",
            call_id,
        )
    finally:
        await conn.close()
    again = await server.start(merge_settings(deepgram), dsn=db_dsn, port=0, telephony=telephony)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{again.port}") as channel2:
            assert await report(channel2, **recording_callback(sid, recording_sid))
        async with gateway(again) as http2:
            body = await merged(http2, call_id, customer)
        assert body["merge"] == "recording" and len(deepgram.batch_requests) == 1
        assert (await event_types(again, call_id)).count("transcript_ready") == 1
        attempts = await again.pool.fetchval(
            "SELECT attempts FROM transcript_merges WHERE call_id = $1", call_id
        )
        assert attempts == 2  # the dead core's claim counts: a job that kills cores ends
    finally:
        await again.stop(grace=1)


async def test_the_stream_waits_for_transcript_ready(
    http: httpx.AsyncClient,
    core: server.Core,
    channel: grpc.aio.Channel,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
) -> None:
    """After the outcome the stream stays open while the merge is pending (well past the
    0.3 s linger) and closes shortly after `transcript_ready`."""
    call_id, sid = await answered_call(http, core, channel, customer)
    seen: list[str] = []
    pings: list[str] = []
    pings_at_outcome = -1
    async with http.stream(
        "GET", f"/calls/{call_id}/events", headers=key(customer), timeout=30
    ) as response:
        assert response.status_code == 200
        async for frame in read_sse(response, pings=pings):
            if "event" in frame:
                seen.append(frame["event"])
                if frame["event"] == "outcome":
                    pings_at_outcome = len(pings)
            # Three 0.2 s heartbeats after the outcome: open well past the 0.3 s linger.
            elif pings_at_outcome >= 0 and len(pings) == pings_at_outcome + 3:
                recording_sid = telephony.add_recording(sid, MP3, duration_sec=9)
                assert await report(channel, **recording_callback(sid, recording_sid))
    assert seen[-3:] == ["outcome", "recording_ready", "transcript_ready"]


async def test_a_recording_that_arrives_while_the_job_is_being_parked_wakes_it(
    pool: asyncpg.Pool[Any], telephony: FakeTelephony
) -> None:
    """A worker read the call before the recording was stored and is about to park the job
    until the recording's deadline; the recording lands in between. The park must not
    happen (the wake would be lost and the merge would wait out the whole deadline).
    No core runs here: the test takes the worker's steps itself, in the racy order."""
    customer = await new_customer(pool)
    service = CallService(pool, telephony, server.call_policy(make_settings()))
    started = await service.start(customer.customer_id, StartRequest("+15550100", "hi"))
    call_id, sid = started.call["call_id"], started.call["call_sid"]
    await service.transition(call_id, "in_progress")
    await service.transition(call_id, "completed", Change(duration_sec=9))

    claimed = await pool.fetchrow(merges_sql.CLAIM, 60.0)
    assert claimed is not None and claimed["call_id"] == call_id
    row = await pool.fetchrow(merges_sql.INPUT, call_id, 30.0)
    assert row["recording_sid"] is None and row["may_wait"]
    recording_sid = telephony.add_recording(sid, MP3, duration_sec=9)
    assert await recordings.remember(pool, call_id, recording_sid, None, 9.0)
    assert await pool.fetchval(merges_sql.WAIT_FOR_RECORDING, call_id, row["recording_due"]) is None
    # Without the recording, the same step parks the job until the deadline.
    other = await service.start(customer.customer_id, StartRequest("+15550100", "hi"))
    other_id = other.call["call_id"]
    await service.transition(other_id, "in_progress")
    await service.transition(other_id, "completed", Change(duration_sec=9))
    again = await pool.fetchrow(merges_sql.CLAIM, 60.0)
    assert again is not None and again["call_id"] == other_id
    due = (await pool.fetchrow(merges_sql.INPUT, other_id, 30.0))["recording_due"]
    assert await pool.fetchval(merges_sql.WAIT_FOR_RECORDING, other_id, due) == other_id


async def test_a_recording_stored_while_the_merge_is_finished_does_not_deadlock(
    pool: asyncpg.Pool[Any], telephony: FakeTelephony
) -> None:
    """A recording callback locks the call (storing the recording), then wakes the job; the
    worker finishing the merge meanwhile must wait for the call row before it touches the
    job, or each holds what the other needs and PostgreSQL aborts one of them (seen in CI as
    a 503 to Twilio's recording callback). The test holds the callback's transaction open
    between its two steps while the worker finishes."""
    customer = await new_customer(pool)
    service = CallService(pool, telephony, server.call_policy(make_settings()))
    started = await service.start(customer.customer_id, StartRequest("+15550100", "hi"))
    call_id, sid = started.call["call_id"], started.call["call_sid"]
    await service.transition(call_id, "in_progress")
    await service.transition(call_id, "completed", Change(duration_sec=9))
    worker = merges.MergeWorker(service, None, server.merge_policy(make_settings()))
    recording_sid = telephony.add_recording(sid, MP3, duration_sec=9)
    merged = {"version": 2, "merge": "live", "turns": [], "degraded": True}

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(calls_sql.SET_RECORDING, call_id, recording_sid, None, 9.0)
        finishing = asyncio.create_task(worker._finish(call_id, merged))
        # The worker now waits for the call row, holding nothing the callback needs.
        await eventually(lambda: waiting_on_a_lock(pool))
        await conn.execute(merges_sql.WAKE, call_id)  # the callback's second step
    await asyncio.wait_for(finishing, 10)
    stored = await pool.fetchval("SELECT merged_transcript FROM calls WHERE call_id = $1", call_id)
    assert stored is not None
    assert (
        await pool.fetchval("SELECT state FROM transcript_merges WHERE call_id = $1", call_id)
        == "done"
    )


async def waiting_on_a_lock(pool: asyncpg.Pool[Any]) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )
