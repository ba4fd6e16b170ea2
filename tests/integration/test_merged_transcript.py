"""GET /calls/{id}/transcript-merged through gateway → core → PostgreSQL: owner-only 404,
202 while the call is live or its merge job runs, then (no Deepgram configured here) the
degraded live-lines merge built from what media reported over its real session stream."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
from callagent.v1 import media_pb2

from core.app import api_keys
from core.domain.transcripts import spoken_ms
from core.main import Core
from tests.conftest import eventually, new_customer
from tests.integration.test_ask_user import session
from tests.integration.test_calls_api import BODY, key, report
from tests.integration.test_merge_jobs import merged


def line(speaker: str, text: str, offset_ms: int, source: str, final: bool = True) -> Any:
    return media_pb2.TranscriptLine(
        speaker=speaker, text=text, final=final, offset_ms=offset_ms, source=source
    )


async def test_not_found_pending_and_empty(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey
) -> None:
    call_id = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"][
        "call_id"
    ]
    url = f"/calls/{call_id}/transcript-merged"

    other = await new_customer(core.pool)
    foreign = await http.get(url, headers=key(other))
    missing = await http.get("/calls/call_nope/transcript-merged", headers=key(customer))
    assert foreign.status_code == missing.status_code == 404
    assert missing.json()["detail"]["code"] == "NOT_FOUND"
    assert foreign.content == missing.content

    live = await http.get(url, headers=key(customer))
    assert live.status_code == 202
    assert live.json() == {"status": "merger_pending"}

    assert (await http.post(f"/calls/{call_id}/cancel", headers=key(customer))).json() == {
        "cancelled": True
    }
    ended = await http.get(url, headers=key(customer))
    assert ended.status_code == 200
    body = ended.json()
    assert body["turns"] == []
    assert body["degraded"] is True and body["merge"] == "live_only"
    assert body["calibration_delta_ms"] is None


async def test_completed_call_merges_its_live_lines(
    http: httpx.AsyncClient, core: Core, channel: grpc.aio.Channel, customer: api_keys.CreatedKey
) -> None:
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    call_id, sid = call["call_id"], call["call_sid"]
    assert await report(channel, kind="status", call_sid=sid, status="in_progress")
    lines = [
        line("agent", "Hello, I'd like a table for two.", 500, "gemini"),
        line("callee", "yes what time", 3000, "gemini"),  # the ear's copy below wins
        line("callee", "Yes, what time?", 3050, "supervisor_stt"),
        line("agent", "At sev", 5000, "gemini", final=False),
        line("agent", "At seven, under Anna.", 5000, "gemini"),
    ]
    async with session(core, call_id) as media:
        await media.next()  # the task: the session is attached
        for each in lines:
            media.send(transcript=each)

        async def stored() -> bool:
            got = (await http.get(f"/calls/{call_id}", headers=key(customer))).json()
            return len(got["transcript_full"]) == 4

        await eventually(stored)
        media.hung_up()
    pending = await http.get(f"/calls/{call_id}/transcript-merged", headers=key(customer))
    assert pending.status_code == 202
    assert await report(channel, kind="status", call_sid=sid, status="completed", duration_sec=61)

    body = await merged(http, call_id, customer)
    assert body == {
        "version": 1,
        "merge": "live_only",
        "degraded": True,
        "degraded_reason": "no Deepgram key configured",
        "duration_ms": 61000,
        "calibration_delta_ms": None,
        "turns": [
            {
                "speaker": "agent",
                "start_ms": 500,
                "end_ms": 500 + spoken_ms("Hello, I'd like a table for two."),
                "text": "Hello, I'd like a table for two.",
                "source": "live_agent",
            },
            {
                "speaker": "callee",
                "start_ms": 3050,
                "end_ms": 3050 + spoken_ms("Yes, what time?"),
                "text": "Yes, what time?",
                "source": "supervisor_stt",
            },
            {
                "speaker": "agent",
                "start_ms": 5000,
                "end_ms": 5000 + spoken_ms("At seven, under Anna."),
                "text": "At seven, under Anna.",
                "source": "live_agent",
            },
        ],
    }
    # Struct numbers travel as doubles; clients get the integers back.
    assert all(type(t[k]) is int for t in body["turns"] for k in ("start_ms", "end_ms"))
    assert type(body["duration_ms"]) is int


async def test_each_utterance_is_stored_once_and_interim_lines_not_at_all(
    http: httpx.AsyncClient, core: Core, channel: grpc.aio.Channel, customer: api_keys.CreatedKey
) -> None:
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    call_id, sid = call["call_id"], call["call_sid"]
    assert await report(channel, kind="status", call_sid=sid, status="in_progress")
    lines = [
        line("callee", "Luigi's", 100, "supervisor_stt", final=False),
        line("callee", "Luigi's, good evening.", 100, "supervisor_stt"),
        line("agent", "Hi, a table for two at seven?", 2000, "gemini"),
        # The ear is lost: Gemini's transcription of the callee is the record from here on.
        line("callee", "Sorry, we are fully booked.", 4000, "gemini"),
        line("agent", "Sor", 6000, "gemini", final=False),
        line("agent", "Sorry to hear that, goodbye.", 6000, "gemini"),
    ]
    async with session(core, call_id) as media:
        await media.next()
        for each in lines:
            media.send(transcript=each)

        async def stored() -> bool:
            got = (await http.get(f"/calls/{call_id}", headers=key(customer))).json()
            return len(got["transcript_full"]) == 4

        await eventually(stored)
        media.hung_up()
    assert await report(channel, kind="status", call_sid=sid, status="completed", duration_sec=9)
    full = (await http.get(f"/calls/{call_id}", headers=key(customer))).json()["transcript_full"]
    assert [(t["speaker"], t["text"], t["source"]) for t in full] == [
        ("callee", "Luigi's, good evening.", "supervisor_stt"),
        ("agent", "Hi, a table for two at seven?", "gemini"),
        ("callee", "Sorry, we are fully booked.", "gemini"),
        ("agent", "Sorry to hear that, goodbye.", "gemini"),
    ]
    rows = await core.pool.fetch(
        "SELECT payload FROM call_events WHERE call_id = $1 AND type = 'transcript' "
        "ORDER BY event_id",
        call_id,
    )
    assert [dict(r["payload"]) for r in rows] == full  # the durable log: the same lines once
    body = await merged(http, call_id, customer)
    assert [(t["speaker"], t["text"], t["source"]) for t in body["turns"]] == [
        ("callee", "Luigi's, good evening.", "supervisor_stt"),
        ("agent", "Hi, a table for two at seven?", "live_agent"),
        ("callee", "Sorry, we are fully booked.", "gemini"),
        ("agent", "Sorry to hear that, goodbye.", "live_agent"),
    ]
