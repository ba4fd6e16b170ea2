"""The post-call model classifier, for real: media's session (gRPC) → core → the production
`OutcomeModel` (google-genai) → the simulated world's generateContent stand-in, which answers
from what the venue really said; and the fallback to the rules when the model is slow,
failing or talking nonsense."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from callagent.v1 import media_pb2

from core import main as server
from core.adapters.outcome_model import OutcomeModel, OutcomeModelError
from core.app import api_keys
from core.settings import Settings
from sim import scenario_files, venues
from sim.dialogue import Request
from sim.gemini_rest_server import FakeGeminiRest
from sim.outcome_truth import WorldOutcomes
from sim.world import Speaker, World
from tests.conftest import eventually, make_settings
from tests.integration.test_ask_user import session, start

KEY = "test-analysis-key"
MODEL = "gemini-3.8-flash"
TODAY = datetime.date.today()
ASK = Request(
    date=TODAY + datetime.timedelta(days=1), time=datetime.time(19, 0), guests=2, name="Anna"
).as_data()
REQUEST = "Good evening, I'd like to book a table for 2 people tomorrow at 19:00 under Anna."
CLAIM = media_pb2.CallOutcome(
    outcome="booked",
    summary="Booked a table for 2 tomorrow at 19:00 under Anna.",
    guests=2,
    holder_name="Anna",
    language="en",
)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def model_server(world: World) -> AsyncIterator[FakeGeminiRest]:
    async with FakeGeminiRest(KEY, source=WorldOutcomes(world)) as fake:
        yield fake


@pytest.fixture
def settings(model_server: FakeGeminiRest) -> Settings:
    """Core with the classifier on, pointed at the stand-in (conftest's `core` reads this)."""
    return make_settings(
        gemini_api_key=KEY,
        analysis_model=MODEL,
        analysis_base_url=model_server.base_url,
        analysis_timeout_sec=1.0,
    )


def converse(world: World, number: str) -> list[dict[str, Any]]:
    """A call to the venue behind `number` in the world: its greeting, the agent's request
    and what the venue says back; returns the transcript media would report."""
    venue = scenario_files.venue_for(number)
    conv = world.open(f"CA{uuid.uuid4().hex}", number, venue)
    mind = venues.VenueMind(venue, TODAY)
    transcript: list[dict[str, Any]] = []

    def say(speaker: Speaker, text: str, act: str, data: dict[str, str]) -> None:
        conv.add(conv.new_line(speaker, act, text, "en", data, (), 1.0))
        transcript.append({"speaker": "callee" if speaker == "venue" else "agent", "text": text})

    for reaction in [*mind.opening(), None, *mind.hear("request", "en", ASK)]:
        if reaction is None:
            say("agent", REQUEST, "request", ASK)
        elif isinstance(reaction, venues.Say):
            say("venue", reaction.text, reaction.act, reaction.data)
        else:
            world.close(conv)  # the venue hung up
    return transcript


async def claim_booked(
    core: server.Core, customer: api_keys.CreatedKey, transcript: list[dict[str, Any]]
) -> dict[str, Any]:
    """Play the transcript and the agent's `booked` over media's session; return the call's
    stored outcome, decisions, events and booking."""
    call_id = await start(core, customer, kind="restaurant_booking")
    async with session(core, call_id) as media:
        await media.next()
        for line in transcript:
            source = "supervisor_stt" if line["speaker"] == "callee" else "gemini"
            media.send(transcript=media_pb2.TranscriptLine(final=True, source=source, **line))
        media.send(outcome=CLAIM)

        async def recorded() -> bool:
            sql = "SELECT outcome_type FROM calls WHERE call_id = $1"
            return bool(await core.pool.fetchval(sql, call_id))

        await eventually(recorded)
    row = await core.pool.fetchrow(
        "SELECT outcome_type, outcome, supervisor_decisions FROM calls WHERE call_id = $1",
        call_id,
    )
    assert row is not None
    events = await core.pool.fetch(
        "SELECT type, payload FROM call_events WHERE call_id = $1 ORDER BY event_id", call_id
    )
    booking = await core.pool.fetchval("SELECT status FROM bookings WHERE call_id = $1", call_id)
    decisions = [d for d in row["supervisor_decisions"] if d["kind"] == "post_call_analysis"]
    return {
        "outcome_type": row["outcome_type"],
        "outcome": row["outcome"],
        "decisions": decisions,
        "events": [(e["type"], e["payload"]) for e in events],
        "booking": booking,
    }


def assert_overruled(call: dict[str, Any], classifier: str) -> None:
    assert call["outcome_type"] == "needs_follow_up"
    assert call["outcome"]["agent_claimed"] == "booked"
    [decision] = call["decisions"]
    assert decision["action"] == "overruled" and decision["classifier"] == classifier
    assert ("supervisor_decision", decision) in call["events"]
    assert call["booking"] == "pending_user_confirm"  # never active


async def test_a_booking_the_venue_confirmed_stands(
    core: server.Core, customer: api_keys.CreatedKey, world: World, model_server: FakeGeminiRest
) -> None:
    call = await claim_booked(core, customer, converse(world, "+15550100"))
    assert call["outcome_type"] == "booked" and not call["decisions"]
    verification = call["outcome"]["verification"]
    assert verification["source"] == "model" and verification["outcome"] == "booked"
    assert verification["reading"]["holder_name"] == "Anna"
    assert verification["reading"]["venue_name"] == "Trattoria Roma"
    assert call["booking"] == "active"
    [request] = model_server.requests
    assert request.model == MODEL and request.headers["x-goog-api-key"] == KEY
    config = request.body["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["temperature"] == 0
    assert set(config["responseSchema"]["properties"]) >= {"outcome_type", "contradicts_agent"}
    assert REQUEST in request.prompt and "Agent's claimed outcome: booked" in request.prompt


async def test_a_claim_at_the_fully_booked_venue_is_overruled_by_the_model(
    core: server.Core, customer: api_keys.CreatedKey, world: World
) -> None:
    call = await claim_booked(core, customer, converse(world, "+15550101"))
    assert_overruled(call, "model")
    assert "fully booked" in call["decisions"][0]["reason"]
    assert call["outcome"]["verification"]["reading"]["outcome_type"] == "refused"


async def test_a_claim_after_the_venue_hung_up_is_overruled_by_the_model(
    core: server.Core, customer: api_keys.CreatedKey, world: World
) -> None:
    call = await claim_booked(core, customer, converse(world, "+15550107"))
    assert_overruled(call, "model")
    assert call["decisions"][0]["verdict"]["outcome"] == "needs_follow_up"


@pytest.mark.parametrize("failure", ["slow", "http_500", "not_json", "wrong_shape"])
async def test_without_a_usable_answer_the_rules_decide(
    core: server.Core,
    customer: api_keys.CreatedKey,
    world: World,
    model_server: FakeGeminiRest,
    failure: str,
) -> None:
    if failure == "slow":
        model_server.delay_s = 30.0  # core waits analysis_timeout_sec = 1 s
    elif failure == "http_500":
        model_server.fail_status = 500
    elif failure == "not_json":
        model_server.answer_text = "Sure! The venue said they are fully booked."
    else:
        model_server.answer_text = '{"outcome_type": "booked"}'
    call = await claim_booked(core, customer, converse(world, "+15550101"))
    assert_overruled(call, "rules")
    assert "fully booked" in call["decisions"][0]["reason"]
    fallback = call["outcome"]["verification"]["model_fallback"]
    expected = {
        "slow": "no answer within 1 s",
        "http_500": "HTTP 500 INTERNAL",
        "not_json": "invalid answer: not JSON",
        "wrong_shape": "invalid answer: confidence",
    }[failure]
    assert fallback.startswith(expected)
    assert KEY not in str(call["outcome"])


async def test_a_refused_key_is_a_non_retryable_model_error(
    model_server: FakeGeminiRest,
) -> None:
    model = OutcomeModel("wrong-key", model=MODEL, base_url=model_server.base_url, timeout_s=5)
    try:
        with pytest.raises(OutcomeModelError) as raised:
            await model.read("Call transcript:\nVenue: hello")
    finally:
        await model.aclose()
    assert raised.value.message == "HTTP 400 INVALID_ARGUMENT" and not raised.value.retryable
    assert "wrong-key" not in repr(raised.value)


async def test_the_outcome_survives_media_cancelling_its_session_while_the_model_thinks(
    core: server.Core, customer: api_keys.CreatedKey, world: World, model_server: FakeGeminiRest
) -> None:
    """Media gives core a bounded time to finish after its last message; an outcome being
    checked by the model when media's session is cancelled is still recorded."""
    model_server.delay_s = 30.0  # core gives up after 1 s and the rules decide
    call_id = await start(core, customer, kind="restaurant_booking")
    async with session(core, call_id) as media:
        await media.next()
        for line in converse(world, "+15550101"):
            source = "supervisor_stt" if line["speaker"] == "callee" else "gemini"
            media.send(transcript=media_pb2.TranscriptLine(final=True, source=source, **line))
        media.send(outcome=CLAIM)
        await model_server.wait_for_request()
        media.cancel()  # the RPC is cancelled: core's handler is cancelled mid-check

    async def recorded() -> bool:
        sql = "SELECT outcome_type FROM calls WHERE call_id = $1"
        return bool(await core.pool.fetchval(sql, call_id))

    await eventually(recorded)
    stored = await core.pool.fetchval("SELECT outcome FROM calls WHERE call_id = $1", call_id)
    assert stored["outcome"] == "needs_follow_up" and stored["agent_claimed"] == "booked"
