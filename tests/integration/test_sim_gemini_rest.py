"""The simulated world's generateContent stand-in checks requests as Google does, and answers
from the world's truth in the requested shape."""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sim import scenario_files, venues
from sim.dialogue import Request
from sim.gemini_rest_server import FakeGeminiRest
from sim.outcome_truth import WorldOutcomes
from sim.world import World

KEY = "sim-rest-key"
PATH = "/v1beta/models/gemini-3.8-flash:generateContent"
TODAY = datetime.date(2030, 6, 13)
GOOD = {
    "contents": [{"role": "user", "parts": [{"text": "Agent's claimed outcome: booked"}]}],
    "generationConfig": {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"outcome_type": {"type": "STRING"}}},
        "temperature": 0,
    },
}
FIELDS = ("outcome_type", "date_time", "contradicts_agent", "refusal_reason")
SCHEMA = {"type": "OBJECT", "properties": {name: {} for name in FIELDS}}


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        FakeGeminiRest(KEY, source=WorldOutcomes(world)) as fake,
        httpx.AsyncClient(base_url=fake.base_url, headers={"x-goog-api-key": KEY}) as http,
    ):
        yield http


async def _error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()["error"]
    assert body["code"] == response.status_code
    return response.status_code, str(body["status"])


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({**GOOD, "prompt": "hi"}).encode(),
        json.dumps({"contents": []}).encode(),
        json.dumps({"contents": [{"parts": []}]}).encode(),
        json.dumps({**GOOD, "generationConfig": {"responseSchema": {"type": "OBJECT"}}}).encode(),
        json.dumps({**GOOD, "generationConfig": {"temperature": 3}}).encode(),
    ],
)
async def test_a_malformed_request_is_invalid_argument(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(PATH, content=body)
    assert await _error(response) == (400, "INVALID_ARGUMENT")


async def test_keys_are_checked_as_google_checks_them(client: httpx.AsyncClient) -> None:
    missing = await client.post(PATH, json=GOOD, headers={"x-goog-api-key": ""})
    assert await _error(missing) == (403, "PERMISSION_DENIED")
    wrong = await client.post(PATH, json=GOOD, headers={"x-goog-api-key": "nope"})
    assert await _error(wrong) == (400, "INVALID_ARGUMENT")
    assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    by_query = await client.post(f"{PATH}?key={KEY}", json=GOOD, headers={"x-goog-api-key": ""})
    assert by_query.status_code == 200


@pytest.mark.parametrize(
    "path", ["/v1beta/models/gemini-3.8-flash:countTokens", "/v1beta/models/bert:generateContent"]
)
async def test_an_unknown_path_or_model_is_not_found(client: httpx.AsyncClient, path: str) -> None:
    assert await _error(await client.post(path, json=GOOD)) == (404, "NOT_FOUND")


def _play(world: World, number: str, *acts: tuple[str, dict[str, str]]) -> str:
    """Speak a call in the world; return its transcript as a prompt would carry it."""
    venue = scenario_files.venue_for(number)
    conv = world.open(f"CA-{number}", number, venue)
    mind = venues.VenueMind(venue, TODAY)
    reactions: list[venues.Reaction] = list(mind.opening())
    for act, data in acts:
        reactions.append(venues.Say(act, f"(agent {act})"))
        reactions.extend(mind.hear(act, "en", data))
    lines = []
    for r in reactions:
        if isinstance(r, venues.Say):
            speaker = "agent" if r.text.startswith("(agent") else "venue"
            conv.add(conv.new_line(speaker, r.act, r.text, "en", dict(r.data), (), 1.0))
            lines.append(f"{speaker}: {r.text}")
    return "\n".join(lines)


async def test_the_answer_is_the_worlds_truth_in_the_requested_shape(
    client: httpx.AsyncClient, world: World
) -> None:
    ask = Request(TODAY, datetime.time(19, 0), 2, "Anna").as_data()
    offered = _play(world, "+15550102", ("request", ask), ("accept_offer", {}))
    refused = _play(world, "+15550101", ("request", ask))

    async def answer(transcript: str) -> dict[str, Any]:
        prompt = f"Agent's claimed outcome: booked\n\nCall transcript:\n{transcript}"
        body = {**GOOD, "contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        body["generationConfig"] = {**GOOD["generationConfig"], "responseSchema": SCHEMA}
        response = (await client.post(PATH, json=body)).json()
        assert response["candidates"][0]["finishReason"] == "STOP"
        assert response["usageMetadata"]["totalTokenCount"] > 0 and response["modelVersion"]
        [part] = response["candidates"][0]["content"]["parts"]
        parsed: dict[str, Any] = json.loads(part["text"])
        return parsed

    booked = await answer(offered)
    assert booked == {
        "outcome_type": "booked",
        "date_time": "2030-06-13T20:30",
        "contradicts_agent": False,
        "refusal_reason": None,
    }
    no = await answer(refused)
    assert no["outcome_type"] == "refused" and no["contradicts_agent"] is True
    assert no["refusal_reason"] == "we are fully booked that evening"
    unknown = await answer("venue: a call nobody made")
    assert unknown["outcome_type"] == "needs_follow_up" and unknown["contradicts_agent"] is False
