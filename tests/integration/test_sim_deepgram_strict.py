"""The simulated Deepgram refuses what the real one refuses, the way it refuses it: handshakes
with unknown or malformed query parameters (400), overload (429/503 on the next connects),
each with Deepgram's JSON error and `dg-error`/`dg-request-id` headers; text frames other than
KeepAlive/Finalize/CloseStream are violations, and a violation fails the test on the way out of
`async with`."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest
from deepgram.core.api_error import ApiError
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from media.providers.deepgram_ear import DeepgramConfig
from sim import deepgram_rules
from sim.deepgram_server import FakeDeepgram

pytestmark = pytest.mark.timeout(30)

TELEPHONY = "model=nova-3&encoding=mulaw&sample_rate=8000&channels=1&language=ru"


def _auth(fake: FakeDeepgram) -> dict[str, str]:
    return {"Authorization": f"Token {fake.api_key}"}


async def _refusal(fake: FakeDeepgram, query: str) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{fake.ws_base}/v1/listen?{query}", additional_headers=_auth(fake)):
            pass
    return refused.value


async def test_an_unknown_query_parameter_is_refused_400_and_recorded() -> None:
    async with FakeDeepgram() as fake:
        config = DeepgramConfig(SecretStr(fake.api_key), fake.http_base, fake.ws_base)
        async with httpx.AsyncClient() as http:
            client = config.client(http)
            with pytest.raises(ApiError) as refused:
                async with client.listen.v1.connect(
                    model="nova-3",
                    request_options={"additional_query_parameters": {"speed_up": "true"}},
                ):
                    pass
        assert refused.value.status_code == 400
        assert fake.violations == ["handshake: unknown query parameter 'speed_up'"]
        assert fake.sessions == []
        fake.violations.clear()  # seen: this test caused it on purpose


async def test_a_refusal_carries_deepgrams_error_json_and_headers() -> None:
    async with FakeDeepgram() as fake:
        refused = await _refusal(fake, TELEPHONY.replace("sample_rate=8000", "sample_rate=fast"))
        response = refused.response
        body = json.loads(response.body or b"")
        assert response.status_code == 400
        assert set(body) == {"err_code", "err_msg", "request_id"}
        assert body["err_msg"] == "invalid value 'fast' for 'sample_rate'"
        assert response.headers["dg-error"] == body["err_msg"]
        assert response.headers["dg-request-id"] == body["request_id"]
        fake.violations.clear()


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (TELEPHONY + "&interim_results=yes", "invalid value 'yes' for 'interim_results'"),
        (TELEPHONY + "&endpointing=-5", "invalid value '-5' for 'endpointing'"),
        (TELEPHONY.replace("nova-3", "nova-9"), "invalid value 'nova-9' for 'model'"),
        (TELEPHONY.replace("language=ru", "language=tlh"), "does not support language 'tlh'"),
        (TELEPHONY.replace("encoding=mulaw", "encoding=mp3"), "invalid value 'mp3' for 'encoding'"),
        (TELEPHONY + "&channels=1", "'channels' given 2 times"),
        (TELEPHONY.replace("&sample_rate=8000", ""), "'encoding' requires 'sample_rate'"),
    ],
)
def test_malformed_live_parameters_are_named(query: str, problem: str) -> None:
    problems = deepgram_rules.query_problems(parse_qs(query, keep_blank_values=True))
    assert len(problems) == 1 and problem in problems[0]


def test_what_the_ear_sends_is_accepted() -> None:
    query = (
        TELEPHONY + "&interim_results=true&endpointing=300&utterance_end_ms=1000"
        "&smart_format=true&vad_events=true&punctuate=true&keyterm=Roma&keyterm=table"
    )
    assert deepgram_rules.query_problems(parse_qs(query)) == []
    for language in ("multi", "en-US", "en", "ru"):
        assert deepgram_rules.query_problems({"model": ["nova-3"], "language": [language]}) == []


async def test_the_next_connects_are_refused_with_429_then_served() -> None:
    async with FakeDeepgram() as fake:
        fake.connect_failures = [429]
        refused = await _refusal(fake, TELEPHONY)
        assert refused.response.status_code == 429
        body = json.loads(refused.response.body or b"")
        assert body["err_code"] == "TOO_MANY_REQUESTS"
        async with connect(f"{fake.ws_base}/v1/listen?{TELEPHONY}", additional_headers=_auth(fake)):
            await fake.wait_until(lambda: len(fake.sessions) == 1)
        assert fake.rejected_upgrades == 1 and fake.violations == []


@pytest.mark.parametrize(
    "frame",
    ['{"type": "KeepAlive", "interval": 5}', '{"type": "Flush"}', "KeepAlive", '["Finalize"]'],
)
async def test_an_unknown_control_message_is_a_violation(frame: str) -> None:
    async with FakeDeepgram() as fake:
        async with connect(
            f"{fake.ws_base}/v1/listen?{TELEPHONY}", additional_headers=_auth(fake)
        ) as ws:
            await ws.send(frame)
            await ws.send('{"type": "KeepAlive"}')
            await fake.wait_until(lambda: fake.sessions[0].controls == ["invalid", "KeepAlive"])
        assert len(fake.violations) == 1
        fake.violations.clear()


async def test_a_violation_fails_the_test_that_caused_it() -> None:
    with pytest.raises(AssertionError, match="unknown control message"):
        async with FakeDeepgram() as fake:
            async with connect(
                f"{fake.ws_base}/v1/listen?{TELEPHONY}", additional_headers=_auth(fake)
            ) as ws:
                await ws.send('{"type": "Bogus"}')
                await fake.wait_until(lambda: bool(fake.violations))


async def test_a_lenient_sim_only_records() -> None:
    async with FakeDeepgram(strict=False) as fake:
        await _refusal(fake, "model=nova-3&bogus=1")
    assert fake.violations == ["handshake: unknown query parameter 'bogus'"]


def test_what_the_sim_sends_is_checked_against_the_sdks_models() -> None:
    metadata = {
        "type": "Metadata",
        "transaction_key": "deprecated",
        "request_id": "r",
        "sha256": "0",
        "created": "2024-01-01T00:00:00.000Z",
        "duration": 1.0,
        "channels": 1,
    }
    assert deepgram_rules.sent_problem(metadata) is None
    with_models = {**metadata, "models": ["m"]}  # batch metadata has it, live does not
    assert "fields Deepgram lacks: ['.models']" in str(deepgram_rules.sent_problem(with_models))
    assert "unknown message type" in str(deepgram_rules.sent_problem({"type": "Hello"}))
    assert "malformed" in str(deepgram_rules.sent_problem({"type": "UtteranceEnd"}))
