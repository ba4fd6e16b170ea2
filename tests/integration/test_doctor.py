"""`callagent doctor` against the loopback stand-ins of Twilio, Gemini and Deepgram, through
the production SDKs: all good passes; each missing variable is named; each wrong credential,
foreign number, unknown or Live-less model, and silent provider is INVALID and fails the run.
Every base URL is asserted to be loopback first, so no test can reach a real provider."""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cli import checks, doctor, probes
from cli.checks import Check, Status
from sim.deepgram_server import FakeDeepgram
from sim.gemini_rest_server import FakeGeminiRest
from sim.twilio_rest import FakeTwilioRest
from tests.integration.test_cli import CLI, tree_env
from tests.unit.test_doctor import PROVIDER_ENV

NUMBER = "+15005550006"
# An address literal: judged public without any lookup, and never connected to by doctor.
PUBLIC_URL = "https://8.8.8.8/callagent"
TIMEOUT_S = 5.0


class _NoAnswers:
    def answer(self, prompt: str, schema: dict[str, Any] | None) -> dict[str, Any]:
        raise AssertionError("doctor asks for no generated content")


class World:
    """The three stand-ins and the environment pointing doctor at them."""

    def __init__(self, twilio: FakeTwilioRest, gemini: FakeGeminiRest, dg: FakeDeepgram) -> None:
        self.twilio, self.gemini, self.deepgram = twilio, gemini, dg
        self.env = {
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM_NUMBER": NUMBER,
            "TWILIO_API_BASE_URL": twilio.base_url,
            "PUBLIC_BASE_URL": PUBLIC_URL,
            "GEMINI_API_KEY": gemini.api_key,
            "GEMINI_MODEL": "gemini-3.8-live",
            "ANALYSIS_BASE_URL": gemini.base_url,
            "DEEPGRAM_API_KEY": dg.api_key,
            "DEEPGRAM_HTTP_BASE": dg.http_base,
        }
        for name in ("TWILIO_API_BASE_URL", "ANALYSIS_BASE_URL", "DEEPGRAM_HTTP_BASE"):
            assert urllib.parse.urlsplit(self.env[name]).hostname == "127.0.0.1", name


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with (
        FakeTwilioRest() as twilio,
        FakeGeminiRest("doctor-gemini-key", source=_NoAnswers()) as gemini,
        FakeDeepgram("doctor-deepgram-key") as dg,
    ):
        yield World(twilio, gemini, dg)


@pytest.fixture
def environ(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The process environment doctor reads: exactly the world's variables, no stray edge."""
    for name in (*PROVIDER_ENV, "TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    yield world.env


async def diagnose(**changes: str | None) -> tuple[dict[str, Check], list[str]]:
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    found, simulated = await doctor.diagnose(TIMEOUT_S)
    return {check.name: check for check in found}, simulated


def statuses(found: dict[str, Check]) -> dict[str, Status]:
    return {name: check.status for name, check in found.items()}


async def test_everything_configured_and_right_is_ok(environ: dict[str, str]) -> None:
    found, simulated = await diagnose()
    assert set(statuses(found).values()) == {Status.OK}, found
    assert simulated == []
    assert checks.exit_code(found.values()) == 0


@pytest.mark.parametrize(
    ("unset", "check", "blocking"),
    [
        ("TWILIO_AUTH_TOKEN", probes.TWILIO_ACCOUNT, True),
        ("TWILIO_FROM_NUMBER", probes.TWILIO_NUMBER, True),
        ("PUBLIC_BASE_URL", probes.PUBLIC_URL, True),
        ("GEMINI_API_KEY", probes.GEMINI, False),
        ("DEEPGRAM_API_KEY", probes.DEEPGRAM, False),
    ],
)
async def test_a_missing_variable_is_named(
    environ: dict[str, str], unset: str, check: str, blocking: bool
) -> None:
    found, _ = await diagnose(**{unset: None})
    assert found[check].status is Status.MISSING
    assert unset in found[check].detail
    assert checks.exit_code(found.values()) == int(blocking)


async def test_wrong_twilio_token_is_invalid_without_the_token(
    world: World, environ: dict[str, str]
) -> None:
    wrong = "wrong-" + world.twilio.auth_token
    found, _ = await diagnose(TWILIO_AUTH_TOKEN=wrong)
    account = found[probes.TWILIO_ACCOUNT]
    assert account.status is Status.INVALID
    assert "401 (20003)" in account.detail and wrong not in account.detail
    assert found[probes.TWILIO_NUMBER].status is Status.SKIPPED
    assert world.twilio.unauthorized_requests == 1


async def test_a_suspended_account_is_invalid(world: World, environ: dict[str, str]) -> None:
    world.twilio.account_status = "suspended"
    found, _ = await diagnose()
    assert found[probes.TWILIO_ACCOUNT].status is Status.INVALID
    assert "suspended" in found[probes.TWILIO_ACCOUNT].detail


async def test_a_number_of_another_account_is_invalid(environ: dict[str, str]) -> None:
    found, _ = await diagnose(TWILIO_FROM_NUMBER="+15005550009")
    assert found[probes.TWILIO_NUMBER].status is Status.INVALID
    assert "not a number of this account" in found[probes.TWILIO_NUMBER].detail


async def test_a_number_without_voice_is_invalid(world: World, environ: dict[str, str]) -> None:
    world.twilio.numbers[NUMBER] = False
    found, _ = await diagnose()
    assert found[probes.TWILIO_NUMBER].status is Status.INVALID
    assert "cannot make calls" in found[probes.TWILIO_NUMBER].detail


@pytest.mark.parametrize("url", ["http://calls.example.com", "https://127.0.0.1:8081"])
async def test_a_public_url_twilio_cannot_reach_is_invalid(
    environ: dict[str, str], url: str
) -> None:
    found, _ = await diagnose(PUBLIC_BASE_URL=url)
    assert found[probes.PUBLIC_URL].status is Status.INVALID


async def test_an_analysis_model_without_generate_content_is_invalid(
    environ: dict[str, str],
) -> None:
    found, _ = await diagnose(ANALYSIS_MODEL="gemini-3.8-live")
    assert found[probes.ANALYSIS].status is Status.INVALID
    assert "does not support generateContent" in found[probes.ANALYSIS].detail


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"GEMINI_MODEL": "no-such-model"}, "404"),
        ({"GEMINI_MODEL": "gemini-3.8-flash"}, "does not support bidiGenerateContent"),
        ({"GEMINI_API_KEY": "wrong-gemini-key"}, "API key not valid"),
    ],
)
async def test_gemini_refusals_are_invalid(
    environ: dict[str, str], change: dict[str, str], said: str
) -> None:
    found, _ = await diagnose(**change)
    gemini = found[probes.GEMINI]
    assert gemini.status is Status.INVALID and said in gemini.detail
    assert "wrong-gemini-key" not in gemini.detail


async def test_wrong_deepgram_key_is_invalid(environ: dict[str, str]) -> None:
    found, _ = await diagnose(DEEPGRAM_API_KEY="wrong-deepgram-key")
    deepgram = found[probes.DEEPGRAM]
    assert deepgram.status is Status.INVALID
    assert "401" in deepgram.detail and "wrong-deepgram-key" not in deepgram.detail


async def test_a_provider_that_never_answers_is_invalid_within_the_bound(
    environ: dict[str, str],
) -> None:
    """A socket that accepts and stays silent: the check gives up at its timeout."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        os.environ["DEEPGRAM_HTTP_BASE"] = base
        found, _ = await doctor.diagnose(0.5)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    deepgram = {c.name: c for c in found}[probes.DEEPGRAM]
    assert deepgram.status is Status.INVALID and "no answer" in deepgram.detail


async def _doctor_process(env: dict[str, str]) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "doctor",
        "--timeout",
        str(TIMEOUT_S),
        env=tree_env({**clean, **env}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_the_command_prints_one_line_per_check_and_exits_by_them(world: World) -> None:
    code, out = await _doctor_process(world.env)
    assert code == 0, out
    assert [line.split()[0] for line in out.splitlines()[:6]] == ["OK"] * 6
    assert "ready for real calls" in out

    code, out = await _doctor_process({**world.env, "DEEPGRAM_API_KEY": "wrong-deepgram-key"})
    assert code == 1, out
    assert "INVALID  deepgram key" in out and "wrong-deepgram-key" not in out
    assert world.gemini.api_key not in out and world.twilio.auth_token not in out
