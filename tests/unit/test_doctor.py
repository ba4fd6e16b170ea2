"""`callagent doctor` and `smoke` without a provider: the verdict lines, the exit rule, the
public-URL rules, and the commands' answers when nothing (or half of something) is set.
No check here opens a socket: a provider that is not configured is never asked."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli import checks, doctor
from cli.main import app
from core.settings import Settings

PROVIDER_ENV = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER",
    "TWILIO_API_BASE_URL",
    "PUBLIC_BASE_URL",
    "GEMINI_API_KEY",
    "GEMINI_BASE_URL",
    "GEMINI_CA_FILE",
    "GEMINI_MODEL",
    "ANALYSIS_BASE_URL",
    "ANALYSIS_MODEL",
    "ANALYSIS_ENABLED",
    "DEEPGRAM_API_KEY",
    "DEEPGRAM_HTTP_BASE",
)


def run(*args: str, **env: str) -> tuple[int, str]:
    clean: dict[str, str | None] = dict.fromkeys(PROVIDER_ENV)
    result = CliRunner().invoke(app, list(args), env={**clean, **env})
    return result.exit_code, result.output


def test_a_line_names_the_status_the_check_and_the_detail() -> None:
    line = checks.line(checks.invalid("twilio account", "Twilio said 401 (20003): Authenticate"))
    assert line == "INVALID  twilio account     Twilio said 401 (20003): Authenticate"


def test_only_invalid_and_a_half_set_provider_fail_the_run() -> None:
    fine = [
        checks.ok("a", "fine"),
        checks.missing("b", "set B", blocking=False),
        checks.skipped("c", "later"),
    ]
    assert checks.exit_code(fine) == 0
    assert checks.exit_code([*fine, checks.missing("d", "set D", blocking=True)]) == 1
    assert checks.exit_code([*fine, checks.invalid("e", "no")]) == 1


def test_summary_says_what_is_simulated_or_what_failed() -> None:
    assert "Twilio, Deepgram" in checks.summary([checks.ok("a", "")], ["Twilio", "Deepgram"])
    assert "fix b" in checks.summary([checks.invalid("b", "x")], [])
    assert "callagent smoke" in checks.summary([checks.ok("a", "")], [])


def test_scrub_replaces_every_secret() -> None:
    assert checks.scrub("key s3cret in s3cret", ["s3cret", None, ""]) == "key *** in ***"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://calls.example.com", "https"),
        ("https://127.0.0.1:8081", "loopback"),
        ("https://localhost", "local name"),
        ("https://media.internal", "local name"),
        ("https://10.1.2.3", "private"),
        ("https://192.168.1.10:8443", "private"),
        ("https://[::1]", "loopback"),
        ("https://169.254.1.1", "private"),
        ("https://calls.example.com/?x=1", "query"),
        ("https://", "no host"),
    ],
)
def test_public_url_problems(url: str, words: str) -> None:
    problem = checks.public_url_problem(url)
    assert problem is not None and words in problem


@pytest.mark.parametrize("url", ["https://calls.example.com", "https://8.8.8.8/media"])
def test_public_urls_twilio_can_reach(url: str) -> None:
    assert checks.public_url_problem(url) is None


def test_doctor_with_nothing_set_names_each_variable_and_passes() -> None:
    code, out = run("doctor")
    assert code == 0, out
    for name in ("TWILIO_ACCOUNT_SID", "PUBLIC_BASE_URL", "GEMINI_API_KEY", "DEEPGRAM_API_KEY"):
        assert name in out
    assert out.count("MISSING") == 5  # the Gemini key is named for media's model and core's
    assert "simulated by `make run` (not configured): Twilio, Gemini, Deepgram" in out


@pytest.mark.parametrize(
    ("env", "unset"),
    [
        ({"TWILIO_ACCOUNT_SID": "AC" + "1" * 32}, "TWILIO_AUTH_TOKEN"),
        ({"TWILIO_AUTH_TOKEN": "not-a-real-token"}, "TWILIO_ACCOUNT_SID"),
    ],
)
def test_doctor_fails_a_half_set_twilio_and_never_prints_the_token(
    env: dict[str, str], unset: str
) -> None:
    code, out = run("doctor", **env)
    assert code == 1
    assert f"MISSING  twilio account     set {unset}" in out
    assert "not-a-real-token" not in out


def test_smoke_refuses_without_every_provider_and_dials_nothing() -> None:
    code, out = run("smoke", "+15551234567", "--yes", CALLAGENT_API_URL="http://127.0.0.1:9")
    assert code == doctor.EXIT_REFUSED
    assert "smoke refuses" in out
    assert "not fully configured: Twilio, Gemini, Deepgram" in out


def test_doctor_reads_core_gemini_settings_with_core_defaults() -> None:
    ours = doctor._CoreGeminiSettings.model_fields
    for name in ("analysis_base_url", "analysis_enabled", "analysis_model"):
        assert ours[name].default == Settings.model_fields[name].default, name
