"""Every simulated venue, end to end with no mocks: REST client → gateway → core → the
twilio SDK → the simulated carrier → Media Streams → media's real bridge → the simulated
Gemini Live (google-genai) and Deepgram (deepgram-sdk) → tools → core → outcome (checked by
core's post-call classifier against the simulated generateContent) → booking, events. All on
loopback ports, in one process."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import pathlib
import shutil
import tempfile
import zoneinfo
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from core import main as server
from core.app import api_keys
from gateway.app import create_app as create_gateway
from media.server import create_app as create_media
from media.settings import MediaSettings
from sim.agent_session import SimAgents
from sim.carrier import SimCarrier
from sim.deepgram_server import FakeDeepgram
from sim.gemini_live_server import FakeGeminiLive
from sim.gemini_rest_server import FakeGeminiRest
from sim.outcome_truth import WorldOutcomes
from sim.settings import ensure_tls_files
from sim.twilio_rest import FakeTwilioRest
from sim.world import World, WorldTranscripts
from telephony.settings import TwilioSettings
from tests.conftest import (
    INTERNAL_TOKEN,
    assert_twilio_wire_clean,
    free_port,
    make_gateway_settings,
    make_settings,
    new_customer,
    serve_asgi,
)
from tests.dates import tomorrow, tomorrows_since

ACCOUNT = "AC" + "e2e1" * 8
TOKEN = "e2e-venues-twilio-token"
GEMINI_KEY = "e2e-gemini-key"
DEEPGRAM_KEY = "e2e-deepgram-key"
TERMINAL = {"completed", "busy", "no_answer", "failed", "cancelled"}

pytestmark = pytest.mark.timeout(300)


@dataclasses.dataclass
class World_:
    http: httpx.AsyncClient
    core: server.Core
    rest: FakeTwilioRest
    customer: api_keys.CreatedKey
    world: World
    agents: SimAgents
    gateway_url: str
    media_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.customer.api_key}


@pytest.fixture(scope="module")
async def stack(admin_dsn: str, template_db: str) -> AsyncIterator[World_]:
    async with venue_stack(admin_dsn, template_db) as world:
        yield world


@contextlib.asynccontextmanager
async def venue_stack(admin_dsn: str, template_db: str) -> AsyncIterator[World_]:
    """The whole product in one process on loopback ports, on a fresh copy of the test
    database, with every provider simulated; also used by `test_observability`."""
    import uuid

    import asyncpg

    from core.store import database

    name = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    await admin.close()
    dsn = database.with_database(admin_dsn, name)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="callagent-e2e-"))
    tls = ensure_tls_files(tmp)
    world = World(speed=10.0, word_ms=150.0)
    agents = SimAgents(world, customer_timeout_s=60)
    media_port = free_port()
    async with (
        FakeTwilioRest(ACCOUNT, TOKEN) as rest,
        FakeGeminiLive(
            api_key=GEMINI_KEY,
            agent=agents,
            cert_chain_file=str(tls.cert_chain_file),
            ca_file=str(tls.ca_file),
        ) as gemini,
        FakeDeepgram(DEEPGRAM_KEY, source=WorldTranscripts(world)) as deepgram,
        FakeGeminiRest(GEMINI_KEY, source=WorldOutcomes(world)) as rest_model,
    ):
        carrier = SimCarrier(rest, world=world, talk_seconds=1.0)
        twilio = TwilioSettings(
            twilio_account_sid=ACCOUNT,
            twilio_auth_token=TOKEN,
            twilio_api_base_url=rest.base_url,
            public_base_url=f"http://127.0.0.1:{media_port}",
        )
        settings = make_settings(
            **twilio.model_dump(),
            events_close_after_outcome_sec=0.5,
            deepgram_api_key=SecretStr(DEEPGRAM_KEY),
            deepgram_http_base=deepgram.http_base,
            merge_poll_sec=0.1,
            gemini_api_key=GEMINI_KEY,
            analysis_base_url=rest_model.base_url,
        )
        core = await server.start(settings, dsn=dsn, port=0)
        core_target = f"127.0.0.1:{core.port}"
        media = MediaSettings(
            core_grpc_target=core_target,
            internal_token=INTERNAL_TOKEN,
            gemini_api_key=SecretStr(GEMINI_KEY),
            gemini_base_url=gemini.base_url,
            gemini_ca_file=str(tls.ca_file),
            deepgram_api_key=SecretStr(DEEPGRAM_KEY),
            deepgram_ws_base=deepgram.ws_base,
            deepgram_http_base=deepgram.http_base,
        )
        try:
            async with (
                serve_asgi(create_media(media, twilio), port=media_port) as media_url,
                serve_asgi(create_gateway(make_gateway_settings(core.port))) as gateway_url,
                httpx.AsyncClient(base_url=gateway_url, timeout=30) as http,
            ):
                customer = await new_customer(core.pool, quota=1_000_000)
                await core.pool.execute("UPDATE customers SET max_concurrent_calls = 20")
                yield World_(http, core, rest, customer, world, agents, gateway_url, media_url)
        finally:
            await carrier.aclose()
            await core.stop(grace=1)
            shutil.rmtree(tmp, ignore_errors=True)
        assert_twilio_wire_clean(carrier)


async def place(
    world: World_, number: str, brief: str, *, answer: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Start a call, answer any ask_user with `answer`, wait for its end; return details."""
    headers = world.headers
    body = {
        "target_phone": number,
        "brief": brief,
        "ask_user_mode": "stream",
        "language": "en",
        "kind": "restaurant_booking",
        **extra,
    }
    started = await world.http.post("/calls", json=body, headers=headers)
    assert started.status_code == 201, started.text
    call_id = started.json()["call"]["call_id"]
    answered: set[str] = set()
    async with asyncio.timeout(240):
        while True:
            call = (await world.http.get(f"/calls/{call_id}", headers=headers)).json()
            if answer is not None:
                for row in await world.core.pool.fetch(
                    "SELECT request_id FROM ask_user_requests WHERE call_id = $1 "
                    "AND status = 'pending'",
                    call_id,
                ):
                    if row["request_id"] not in answered:
                        answered.add(row["request_id"])
                        reply = await world.http.post(
                            f"/calls/{call_id}/answer",
                            json={"answer": answer, "request_id": row["request_id"]},
                            headers=headers,
                        )
                        assert reply.json() == {"delivered": True}
            if call["status"] in TERMINAL and (
                call["outcome_type"] or call["status"] != "completed"
            ):
                break
            await asyncio.sleep(0.2)
    call["events"] = [
        dict(r)
        for r in await world.core.pool.fetch(
            "SELECT type, payload FROM call_events WHERE call_id = $1 ORDER BY event_id", call_id
        )
    ]
    listed = await world.http.get("/v1/booking/bookings?limit=100", headers=headers)
    bookings = listed.json()
    call["bookings"] = bookings
    call["booking"] = next((b for b in bookings if b["call_id"] == call_id), None)
    return call


def event_types(call: dict[str, Any]) -> list[str]:
    return [e["type"] for e in call["events"]]


async def assert_each_line_once(world: World_, call: dict[str, Any]) -> None:
    """Each utterance is stored once: the callee's lines come from the ear alone, each one a
    line the venue said (its first words, said while the model connected, included), and
    the durable `transcript` events are exactly the stored final lines."""
    async with world.core.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        full = await conn.fetchval(
            "SELECT transcript_full FROM calls WHERE call_id = $1", call["call_id"]
        )
        events = await conn.fetch(
            "SELECT payload FROM call_events WHERE call_id = $1 AND type = 'transcript' "
            "ORDER BY event_id",
            call["call_id"],
        )
    assert [dict(e["payload"]) for e in events] == full
    assert all(line["final"] for line in full)
    callee = [line for line in full if line["speaker"] == "callee"]
    assert callee and {line["source"] for line in callee} == {"supervisor_stt"}
    conv = world.world.get(call["call_sid"])
    assert conv is not None
    venue = [line.text for line in conv.lines if line.speaker == "venue"]
    heard = [line["text"] for line in callee]
    assert heard[0] == venue[0]
    assert not collections.Counter(heard) - collections.Counter(venue)


async def test_books_as_asked(stack: World_) -> None:
    asked = tomorrow()
    call = await place(stack, "+15550100", "Table for 2 tomorrow at 19:00 under Anna")
    assert call["status"] == "completed" and call["outcome_type"] == "booked"
    booking = call["booking"]
    assert booking["status"] == "active" and booking["guests"] == 2
    assert booking["booking_holder_name"] == "Anna"
    day, _, hour = booking["booking_date"].partition("T")
    assert day in tomorrows_since(asked) and hour == "19:00:00"
    # a fictional number has no zone: UTC, with the local wall time kept
    assert booking["booking_local_time"] == booking["booking_date"]
    assert booking["venue_timezone"] == "UTC"
    assert booking["venue_name"] == "Trattoria Roma"
    # core's post-call model (the sim's generateContent) read the call and confirmed it
    verification = await stack.core.pool.fetchval(
        "SELECT outcome->'verification' FROM calls WHERE call_id = $1", call["call_id"]
    )
    assert verification["source"] == "model" and verification["outcome"] == "booked"
    assert booking["contact_phone"] == "+15550100"
    assert booking["language"] == "en"
    assert call["outcome_charge_cents"] > 0
    speakers = {line["speaker"] for line in call["transcript_full"]}
    assert {"agent", "callee"} <= speakers
    assert any(line["source"] == "supervisor_stt" for line in call["transcript_full"])
    assert event_types(call)[0] == "status" and "outcome" in event_types(call)
    await assert_each_line_once(stack, call)
    turns = (await merged_after_end(stack, call))["turns"]
    # Read after the merge: media may still flush a last line as the call ends. Agent turns
    # are the words the recording holds: the line as said, or its start if cut short.
    headers = {"X-API-Key": stack.customer.api_key}
    stored = (await stack.http.get(f"/calls/{call['call_id']}", headers=headers)).json()
    spoken = [line["text"].strip() for line in stored["transcript_full"]]
    assert turns and all(any(s.startswith(turn["text"]) for s in spoken) for turn in turns)


async def merged_after_end(world: World_, call: dict[str, Any]) -> dict[str, Any]:
    """The merged transcript, polled from the call's end; it must be ready within 30 s."""
    headers = {"X-API-Key": world.customer.api_key}
    url = f"/calls/{call['call_id']}/transcript-merged"
    async with asyncio.timeout(30):
        while True:
            got = await world.http.get(url, headers=headers)
            assert got.status_code in (200, 202), got.text
            if got.status_code == 200:
                return dict(got.json())
            await asyncio.sleep(0.2)


async def test_fully_booked_is_a_refusal(stack: World_) -> None:
    call = await place(stack, "+15550101", "Table for 2 tomorrow at 19:00 under Anna")
    assert call["outcome_type"] == "refused"
    assert call["booking"]["status"] == "cancelled"
    assert "booked" in (call["booking"]["refusal_reason"] or "")


async def test_other_time_is_asked_and_accepted(stack: World_) -> None:
    asked = tomorrow()
    call = await place(stack, "+15550102", "Table for 2 tomorrow at 19:00 under Anna", answer="yes")
    assert "ask_user" in event_types(call) and "answer" in event_types(call)
    assert call["outcome_type"] == "booked"
    day, _, hour = call["booking"]["booking_date"].partition("T")
    assert day in tomorrows_since(asked) and hour == "20:30:00"


async def test_busy_and_no_answer(stack: World_) -> None:
    busy, silent = await asyncio.gather(
        place(stack, "+15550103", "Table for 2 tomorrow at 19:00 under Anna"),
        place(stack, "+15550104", "Table for 2 tomorrow at 19:00 under Anna"),
    )
    assert busy["status"] == "busy" and busy["outcome_charge_cents"] == 0
    assert silent["status"] == "no_answer" and silent["booking"] is None


async def test_voicemail_is_detected(stack: World_) -> None:
    call = await place(stack, "+15550105", "Table for 2 tomorrow at 19:00 under Anna")
    kinds = [d["kind"] for d in call["supervisor_decisions"]]
    assert "voicemail" in kinds
    assert call["outcome_type"] in ("needs_follow_up", "failed")
    assert call["booking"] is None  # a voicemail leaves no booking


async def test_booking_date_is_true_utc_in_the_venues_zone(stack: World_) -> None:
    asked = tomorrow()
    call = await place(
        stack,
        "+15550150",
        "Table for 2 tomorrow at 19:00 under Anna",
        parsed_slots={"venue_timezone": "America/New_York"},
    )
    booking = call["booking"]
    day = booking["booking_local_time"][:10]
    assert day in tomorrows_since(asked)
    local = datetime.datetime.fromisoformat(f"{day}T19:00")
    utc = local.replace(tzinfo=zoneinfo.ZoneInfo("America/New_York")).astimezone(datetime.UTC)
    assert booking["booking_date"] == utc.replace(tzinfo=None).isoformat()
    assert booking["booking_local_time"] == local.isoformat()
    assert booking["venue_timezone"] == "America/New_York"
    assert booking["venue_name"] == "Corner Cafe" and booking["contact_phone"] == "+15550150"


async def test_cancelling_a_booked_table_leaves_it_cancelled(stack: World_) -> None:
    booked = await place(stack, "+15550100", "Table for 3 tomorrow at 20:00 under Clara")
    assert booked["booking"]["status"] == "active"
    booked_day = booked["booking"]["booking_local_time"][:10]
    cancel = await place(
        stack,
        "+15550100",
        "Cancel the table for 3 tomorrow at 20:00 under Clara",
        kind="restaurant_cancel",
        parsed_slots={"name": "Clara", "date": booked_day, "time": "20:00"},
    )
    assert cancel["outcome_type"] == "booked", cancel["outcome_summary"]
    assert cancel["booking"] is None  # no new row
    [after] = [b for b in cancel["bookings"] if b["booking_id"] == booked["booking"]["booking_id"]]
    assert after["status"] == "cancelled"
    moved = datetime.datetime.fromisoformat(after["updated_at"])
    assert moved > datetime.datetime.fromisoformat(booked["booking"]["updated_at"])


async def test_ivr_menu_needs_a_digit(stack: World_) -> None:
    call = await place(
        stack, "+15550106", "Room for 2 tomorrow, one night, under Anna", kind="hotel_booking"
    )
    assert ["1"] in [c.digits for c in stack.rest.calls if c.digits]
    assert call["outcome_type"] == "booked"
    await assert_each_line_once(stack, call)


async def test_hangs_up_mid_call(stack: World_) -> None:
    call = await place(stack, "+15550107", "Table for 2 tomorrow at 19:00 under Anna")
    assert call["status"] == "completed"
    assert call["outcome_type"] in ("needs_follow_up", "failed")
    # The venue's last words before it hung up are on record (the ear is flushed at the end).
    conv = stack.world.get(call["call_sid"])
    assert conv is not None
    said = [line.text for line in conv.lines if line.speaker == "venue"]
    heard = [line["text"] for line in call["transcript_full"] if line["speaker"] == "callee"]
    assert heard[-1] == said[-1]
    assert call["booking"] is None or call["booking"]["status"] == "pending_user_confirm"


async def test_russian_venue(stack: World_) -> None:
    call = await place(
        stack, "+15550108", "Столик на двоих завтра в 19:00 на имя Анна", language="ru"
    )
    assert call["outcome_type"] == "booked"
    assert any(
        any("а" <= ch <= "я" for ch in line["text"].lower()) for line in call["transcript_full"]
    )
    await assert_each_line_once(stack, call)


async def test_talks_over_the_agent(stack: World_) -> None:
    call = await place(stack, "+15550109", "Table for 2 tomorrow at 19:00 under Anna")
    assert call["outcome_type"] == "booked"
    await assert_each_line_once(stack, call)


async def test_unknown_number_gets_the_default_venue(stack: World_) -> None:
    call = await place(stack, "+15550150", "Table for 2 tomorrow at 19:00 under Anna")
    assert call["outcome_type"] == "booked"


async def test_an_agent_claiming_success_it_did_not_get_is_overruled(stack: World_) -> None:
    """The sim's agent wrongly reports `booked` at the fully booked venue and at the one that
    hangs up: no call ends `booked` and no booking is active."""
    stack.agents.overclaim = True
    try:
        full, hung_up = await asyncio.gather(
            place(stack, "+15550101", "Table for 2 tomorrow at 19:00 under Anna"),
            place(stack, "+15550107", "Table for 2 tomorrow at 19:00 under Anna"),
        )
    finally:
        stack.agents.overclaim = False
    for call in (full, hung_up):
        assert call["outcome_type"] != "booked", call["outcome_summary"]
        assert call["booking"] is None or call["booking"]["status"] != "active"
    # The fully booked venue refuses and stays on the line: the claim reaches core, and the
    # post-call model (the sim's generateContent, answering from what the venue said)
    # overrules it.
    analysis = [d for d in full["supervisor_decisions"] if d["kind"] == "post_call_analysis"]
    assert [d["action"] for d in analysis] == ["overruled"], full["outcome_summary"]
    assert analysis[0]["classifier"] == "model"
    assert "fully booked" in analysis[0]["reason"]
    assert full["outcome_type"] == "needs_follow_up"
    assert full["booking"]["status"] == "pending_user_confirm"
    assert "supervisor_decision" in event_types(full)
    # The venue that hangs up usually drops the line before the agent's end_call: media then
    # reports the call `failed` itself and the late claim is never sent. If the claim got in
    # first, it was overruled.
    stored = await stack.core.pool.fetchval(
        "SELECT outcome FROM calls WHERE call_id = $1", hung_up["call_id"]
    )
    decisions = [d["kind"] for d in hung_up["supervisor_decisions"]]
    if stored.get("agent_claimed"):
        assert "post_call_analysis" in decisions
        assert stored["verification"]["source"] == "model"
    else:
        assert "post_call_analysis" not in decisions and hung_up["outcome_type"] == "failed"
