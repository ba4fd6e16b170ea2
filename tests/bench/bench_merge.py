"""The merged transcript: time from the recording callback to `transcript_ready`, and
core's CPU per merged call-minute.

One core (in this process) on a fresh database, the carrier's recordings served through
the telephony port, Deepgram's batch API played by the sim's stand-in over loopback HTTP
through deepgram-sdk. Each of CALLS answered calls has MINUTES minutes of talk: an MP3 of
that length, an agent line every 8 s (the words Deepgram returns) and a callee line
between them. The recording callbacks come one at a time; latency is the database's own
clock from the callback's `recording_ready` to `transcript_ready`. CPU is this process's
(core + the Deepgram stand-in, so an upper bound for core alone) over the merges.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time

import grpc
import numpy as np
from callagent.v1 import telephony_pb2, telephony_pb2_grpc
from pydantic import SecretStr

from core import main as server
from core.app import api_keys
from core.app.call_status import Change
from core.domain.tasks import StartRequest
from core.settings import Settings
from sim.deepgram_server import FakeDeepgram
from sim.mp3 import encode_mp3
from sim.world import World, WorldTranscripts
from tests.fakes.telephony import FakeTelephony

CALLS = 20
MINUTES = 3
INTERNAL = "bench-merge-internal"
KEY = "bench-merge-deepgram"
SENTENCE = "Hello, I would like a table for two tomorrow at seven under Anna please.".split()


def recording(seed: int) -> tuple[bytes, list[tuple[str, float, float]], list[dict[str, object]]]:
    """(MP3, the words on its clock, the live lines on the media clock 0.8 s behind)."""
    rng = np.random.default_rng(seed)
    seconds = MINUTES * 60
    pcm = (rng.normal(0, 300, seconds * 8000)).astype("<i2").tobytes()
    mp3 = encode_mp3(pcm, 8000)
    words: list[tuple[str, float, float]] = []
    lines: list[dict[str, object]] = []
    for start in range(0, seconds - 8, 8):
        at = start + 0.5 + seed * 0.001
        for i, word in enumerate(SENTENCE):
            words.append((word, round(at + i * 0.3, 3), round(at + i * 0.3 + 0.25, 3)))
        agent = " ".join(SENTENCE)
        lines.append(
            {
                "speaker": "agent",
                "text": agent,
                "final": True,
                "offset_ms": round(at * 1000) - 800,
                "source": "gemini",
            }
        )
        lines.append(
            {
                "speaker": "callee",
                "text": "Yes, of course, one moment.",
                "final": True,
                "offset_ms": round((at + 5) * 1000) - 800,
                "source": "supervisor_stt",
            }
        )
    return mp3, words, lines


async def run() -> None:
    world = World()
    telephony = FakeTelephony()
    with tempfile.TemporaryDirectory(prefix="callagent-bench-merge-") as tmp:
        async with FakeDeepgram(KEY, source=WorldTranscripts(world), keep_sessions=False) as dg:
            settings = Settings(
                callagent_data_dir=tmp,
                callagent_grpc_port=0,
                internal_token=SecretStr(INTERNAL),
                allow_fictional_numbers=True,
                deepgram_api_key=SecretStr(KEY),
                deepgram_http_base=dg.http_base,
                merge_poll_sec=0.5,
            )
            core = await server.start(settings, port=0, telephony=telephony)
            try:
                await measure(core, world, telephony)
            finally:
                await core.stop(grace=1)


async def measure(core: server.Core, world: World, telephony: FakeTelephony) -> None:
    async with core.pool.acquire() as conn:
        customer = await api_keys.create_key(conn, "bench-merge", quota_limit=10**9)
    await core.pool.execute("UPDATE customers SET max_concurrent_calls = 100")
    prepared = []
    for n in range(CALLS):
        mp3, words, lines = recording(n)
        world.add_recording(mp3, words)
        started = await core.calls.start(customer.customer_id, StartRequest("+15550100", "hi"))
        call_id, sid = started.call["call_id"], started.call["call_sid"]
        await core.calls.transition(call_id, "in_progress")
        await core.pool.execute(
            "UPDATE calls SET transcript_full = $2::jsonb WHERE call_id = $1", call_id, lines
        )
        await core.calls.transition(call_id, "completed", Change(duration_sec=MINUTES * 60))
        prepared.append((call_id, sid, telephony.add_recording(sid, mp3, MINUTES * 60)))
    target = f"127.0.0.1:{core.port}"
    latencies = []
    cpu_before = time.process_time()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = telephony_pb2_grpc.TelephonyEventServiceStub(channel)
        for call_id, sid, recording_sid in prepared:
            await stub.ReportTelephonyEvent(
                telephony_pb2.ReportTelephonyEventRequest(
                    kind="recording",
                    call_sid=sid,
                    recording_sid=recording_sid,
                    recording_status="completed",
                    recording_duration_sec=MINUTES * 60,
                ),
                metadata=(("x-internal-token", INTERNAL),),
            )
            async with asyncio.timeout(60):
                while not await core.pool.fetchval(  # noqa: ASYNC110  # another task merges
                    "SELECT state = 'done' FROM transcript_merges WHERE call_id = $1", call_id
                ):
                    await asyncio.sleep(0.005)
            gap = await core.pool.fetchval(
                "SELECT extract(epoch FROM max(created_at) FILTER (WHERE type = 'transcript_ready')"
                " - max(created_at) FILTER (WHERE type = 'recording_ready')) FROM call_events"
                " WHERE call_id = $1",
                call_id,
            )
            latencies.append(float(gap) * 1000)
    cpu = time.process_time() - cpu_before
    merged = await core.pool.fetchval(
        "SELECT count(*) FROM calls WHERE merged_transcript->>'merge' = 'recording'"
    )
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    print(f"merge: {CALLS} calls of {MINUTES} min, {merged} merged from the recording")
    print(
        f"merge: recording callback -> transcript_ready p50 {statistics.median(latencies):.0f} ms"
        f", p99 {p99:.0f} ms (max {latencies[-1]:.0f} ms)"
    )
    print(
        f"merge: CPU {cpu * 1000 / (CALLS * MINUTES):.1f} ms per merged call-minute"
        " (core + the Deepgram stand-in in one process)"
    )


def main() -> None:
    asyncio.run(run())
