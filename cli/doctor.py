"""`callagent doctor` and `callagent smoke`: going from the simulated world to real calls.

`doctor` reads the same environment variables the processes read (through their own
settings classes: `telephony.settings`, `media.settings`) and asks each configured provider
whether they work; `smoke` places one real call through a running stack, and refuses unless
doctor finds all three providers configured and OK. Neither runs in CI: the tests drive
doctor against the loopback stand-ins in `sim/` and smoke only as far as its refusal.
The SDK-heavy probes are imported inside the commands, so other commands do not pay for them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic_settings import BaseSettings, SettingsConfigDict

from cli import checks, live_call
from cli.api import DEFAULT_API_URL, EXIT_INTERRUPTED
from cli.checks import Check

if TYPE_CHECKING:
    from media.settings import MediaSettings

EXIT_REFUSED = 2
SMOKE_BRIEF = (
    "This is a test call of an AI phone agent. Say hello, ask the person how they are, "
    "thank them and say goodbye. Book nothing."
)
Timeout = Annotated[
    float, typer.Option("--timeout", min=0.5, help="Seconds each provider check may take.")
]


class _CoreGeminiSettings(BaseSettings):
    """Core's Gemini settings, read under core's variable names (`cli` may not import
    core.settings; a test holds the defaults equal). ANALYSIS_BASE_URL is also where doctor
    asks about models (the sim's plain-HTTP stand-in), else media's GEMINI_BASE_URL, else
    Google."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    analysis_base_url: str | None = None
    analysis_enabled: bool = True
    analysis_model: str = "gemini-3.8-flash"


async def diagnose(timeout_s: float) -> tuple[list[Check], list[str]]:
    """Every check's verdict, in a fixed order, and the providers left unset (simulated)."""
    from cli import probes
    from media.settings import MediaSettings
    from telephony.settings import TwilioSettings

    twilio_settings = TwilioSettings()
    media = MediaSettings()
    core = _CoreGeminiSettings()
    rest_base = core.analysis_base_url
    gemini_where = rest_base or media.gemini_base_url or "Google"
    async with asyncio.TaskGroup() as group:
        twilio = group.create_task(probes.twilio(twilio_settings, timeout_s))
        url = group.create_task(
            probes.bounded(probes.PUBLIC_URL, "DNS", probes.public_url(twilio_settings), timeout_s)
        )
        live = probes.gemini(media, rest_base, probes.live_need(media))
        gemini = group.create_task(probes.bounded(probes.GEMINI, gemini_where, live, timeout_s))
        analysis = group.create_task(_analysis(core, media, gemini_where, timeout_s))
        deepgram = group.create_task(
            probes.bounded(
                probes.DEEPGRAM, media.deepgram_http_base, probes.deepgram(media), timeout_s
            )
        )
    found = [*twilio.result(), url.result(), gemini.result(), analysis.result()]
    found.append(deepgram.result())
    unset = {
        "Twilio": not probes.twilio_configured(twilio_settings),
        "Gemini": media.gemini_api_key is None,
        "Deepgram": media.deepgram_api_key is None,
    }
    return found, [name for name, is_unset in unset.items() if is_unset]


async def _analysis(
    core: _CoreGeminiSettings, media: MediaSettings, where: str, timeout_s: float
) -> Check:
    from cli import probes

    if not core.analysis_enabled:
        return checks.skipped(probes.ANALYSIS, "ANALYSIS_ENABLED=false: outcomes by rules only")
    need = probes.ModelNeed(
        probes.ANALYSIS,
        "ANALYSIS_MODEL",
        core.analysis_model,
        "generateContent",
        "core checks outcomes by rules only",
    )
    probe = probes.gemini(media, core.analysis_base_url, need)
    return await probes.bounded(probes.ANALYSIS, where, probe, timeout_s)


def _report(found: list[Check], simulated: list[str]) -> None:
    for check in found:
        typer.echo(checks.line(check))
    typer.echo(checks.summary(found, simulated))


def doctor(timeout: Timeout = 10.0) -> None:
    """Check the configured Twilio, Gemini and Deepgram credentials against the providers.

    Exit 0 when everything configured works (unset providers are simulated by `make run`),
    1 when a check is INVALID or a provider is configured by halves.
    """
    found, simulated = asyncio.run(diagnose(timeout))
    _report(found, simulated)
    raise typer.Exit(checks.exit_code(found))


def smoke(
    number: Annotated[str, typer.Argument(help="Your own phone, E.164 (+15551234567).")],
    brief: Annotated[str, typer.Option(help="What the agent says it is doing.")] = SMOKE_BRIEF,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before dialing.")] = False,
    timeout: Timeout = 10.0,
    api_url: Annotated[
        str, typer.Option("--api-url", envvar="CALLAGENT_API_URL", help="Gateway base URL.")
    ] = DEFAULT_API_URL,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="CALLAGENT_API_KEY", help="Your API key.")
    ] = None,
) -> None:
    """Place ONE real, billed call through a running stack and follow it (never in CI).

    Refuses (exit 2) unless doctor finds Twilio, Gemini and Deepgram all configured and OK
    in this shell; run the stack with the same environment.
    """
    found, simulated = asyncio.run(diagnose(timeout))
    _report(found, simulated)
    if simulated or checks.exit_code(found):
        unset = f" (not fully configured: {', '.join(simulated)})" if simulated else ""
        typer.echo(
            f"smoke refuses: a real call needs Twilio, Gemini and Deepgram configured "
            f"and OK{unset}; fix what doctor reports above",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED)
    if not yes:
        typer.confirm(f"Dial {number} for real (billed by Twilio, Gemini, Deepgram)?", abort=True)
    body = {"target_phone": number, "brief": brief, "ask_user_mode": "stream"}
    try:
        code = asyncio.run(live_call.run(api_url, api_key, body, as_json=False))
    except KeyboardInterrupt:
        typer.echo("\nstopped following; the call goes on (see `callagent calls`)", err=True)
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `doctor` and `smoke` to the `callagent` command."""
    app.command("doctor")(doctor)
    app.command("smoke")(smoke)
