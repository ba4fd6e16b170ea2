"""`callagent doctor`'s questions to Twilio, Gemini and Deepgram, through the same SDKs (and
the same client builders) the processes use, so a pass here means the processes' credentials
work. Each probe is bounded in time, turns the provider's refusal into an INVALID line with
the provider's own words (secrets scrubbed), and reads nothing it does not need: the Twilio
account and the from-number's record, one Gemini `Model`, the Deepgram key's projects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import urllib.parse
from collections.abc import Awaitable
from typing import Any

import aiohttp
import httpx
from deepgram.core.api_error import ApiError as DeepgramApiError
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from cli import checks
from cli.checks import Check
from media.settings import MediaSettings
from telephony import twilio_rest
from telephony.settings import TwilioSettings

TWILIO_ACCOUNT = "twilio account"
TWILIO_NUMBER = "twilio number"
PUBLIC_URL = "public url"
GEMINI = "gemini live model"
ANALYSIS = "gemini analysis"
DEEPGRAM = "deepgram key"
LIVE_METHOD = "bidiGenerateContent"
_UNREACHABLE = (aiohttp.ClientError, httpx.HTTPError, OSError)


async def bounded(name: str, where: str, probe: Awaitable[Check], timeout_s: float) -> Check:
    """`probe`'s verdict, or INVALID when `where` does not answer within `timeout_s`.

    A failure no probe foresaw is one INVALID line too (its type only: an SDK's message may
    quote a request), so one odd provider never hides the others' verdicts.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await probe
    except TimeoutError:
        return checks.invalid(name, f"no answer from {where} within {timeout_s:g} s")
    except Exception as exc:
        return checks.invalid(name, f"checking {where} failed: {type(exc).__name__}")


def twilio_configured(settings: TwilioSettings) -> bool:
    return settings.twilio_account_sid is not None and settings.twilio_auth_token is not None


async def twilio(settings: TwilioSettings, timeout_s: float) -> list[Check]:
    """The account is reachable and active; the from-number is the account's and voice-capable."""
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    after = checks.skipped(TWILIO_NUMBER, "needs a working Twilio account first")
    if sid is None and token is None:
        hint = "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (unset: `make run` simulates Twilio)"
        return [checks.missing(TWILIO_ACCOUNT, hint, blocking=False), after]
    if sid is None or token is None:
        unset = "TWILIO_ACCOUNT_SID" if sid is None else "TWILIO_AUTH_TOKEN"
        return [
            checks.missing(TWILIO_ACCOUNT, f"set {unset} (its pair is set)", blocking=True),
            after,
        ]
    base = (settings.twilio_api_base_url or twilio_rest.TWILIO_API_BASE).rstrip("/")
    secret = token.get_secret_value()
    twilio_rest.quiet_sdk_logging()
    http = twilio_rest.HeaderAuthHttpClient()
    try:
        client = Client(sid, secret, http_client=http)
        client.api.base_url = base
        account = client.api.v2010.accounts(sid)
        found = await bounded(TWILIO_ACCOUNT, base, _twilio_account(account, base), timeout_s)
        found = _scrubbed(found, secret)
        if found.status is not checks.Status.OK:
            return [found, after]
        number = await bounded(
            TWILIO_NUMBER, base, _twilio_number(account, base, settings), timeout_s
        )
        return [found, _scrubbed(number, secret)]
    finally:
        await http.close()


async def _twilio_account(account: Any, base: str) -> Check:
    try:
        record = await account.fetch_async()
    except TwilioRestException as exc:
        return checks.invalid(TWILIO_ACCOUNT, _twilio_said(exc))
    except _UNREACHABLE as exc:
        return checks.invalid(TWILIO_ACCOUNT, f"cannot reach {base}: {type(exc).__name__}")
    if record.status != "active":
        return checks.invalid(TWILIO_ACCOUNT, f"the account is {record.status}, not active")
    kind = record.type or "unknown"
    note = ": calls reach verified numbers only" if kind == "Trial" else ""
    return checks.ok(TWILIO_ACCOUNT, f"reachable and active ({kind} account{note})")


async def _twilio_number(account: Any, base: str, settings: TwilioSettings) -> Check:
    if "twilio_from_number" not in settings.model_fields_set:
        hint = "set TWILIO_FROM_NUMBER to a voice number the account owns (E.164)"
        return checks.missing(TWILIO_NUMBER, hint, blocking=True)
    number = settings.twilio_from_number
    try:
        owned = await account.incoming_phone_numbers.list_async(phone_number=number, limit=20)
    except TwilioRestException as exc:
        return checks.invalid(TWILIO_NUMBER, _twilio_said(exc))
    except _UNREACHABLE as exc:
        return checks.invalid(TWILIO_NUMBER, f"cannot reach {base}: {type(exc).__name__}")
    record = next((n for n in owned if n.phone_number == number), None)
    if record is None:
        return checks.invalid(
            TWILIO_NUMBER, f"TWILIO_FROM_NUMBER={number} is not a number of this account"
        )
    if not (record.capabilities or {}).get("voice"):
        return checks.invalid(TWILIO_NUMBER, f"{number} is the account's but cannot make calls")
    return checks.ok(TWILIO_NUMBER, f"{number} is the account's and voice-capable")


def _twilio_said(exc: TwilioRestException) -> str:
    return f"Twilio said {exc.status} ({exc.code}): {exc.msg}"


async def public_url(settings: TwilioSettings) -> Check:
    """PUBLIC_BASE_URL is https on a host the internet reaches (judged, not fetched: media
    may not be running yet). Only real Twilio needs it; the sim reaches media on loopback."""
    if not twilio_configured(settings):
        if "public_base_url" in settings.model_fields_set:
            return checks.skipped(PUBLIC_URL, "only real Twilio uses it (the sim is on loopback)")
        hint = "set PUBLIC_BASE_URL with Twilio: the https URL Twilio reaches media on"
        return checks.missing(PUBLIC_URL, hint, blocking=False)
    if "public_base_url" not in settings.model_fields_set:
        hint = "set PUBLIC_BASE_URL to the https URL Twilio reaches media on"
        return checks.missing(PUBLIC_URL, hint, blocking=True)
    url = settings.public_base_url
    if (problem := checks.public_url_problem(url)) is not None:
        return checks.invalid(PUBLIC_URL, f"PUBLIC_BASE_URL {problem}")
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except OSError:
        return checks.invalid(PUBLIC_URL, f"PUBLIC_BASE_URL host {host} does not resolve")
    for address in sorted({str(info[4][0]) for info in found}):
        if (problem := checks.host_problem(address)) is not None:
            return checks.invalid(PUBLIC_URL, f"{host} resolves to {address}, which {problem}")
    return checks.ok(PUBLIC_URL, f"{url} is https on a public host")


@dataclasses.dataclass(frozen=True, slots=True)
class ModelNeed:
    """A model a process uses and the method it calls: media's Live model, core's
    post-call model (`generateContent`)."""

    check: str
    variable: str
    model: str
    method: str
    unset: str  # what happens without GEMINI_API_KEY


def live_need(settings: MediaSettings) -> ModelNeed:
    return ModelNeed(
        GEMINI, "GEMINI_MODEL", settings.gemini_model, LIVE_METHOD, "`make run` simulates Gemini"
    )


async def gemini(settings: MediaSettings, rest_base_url: str | None, need: ModelNeed) -> Check:
    """The model exists for this key and supports the method its process calls."""
    if settings.gemini_api_key is None:
        return checks.missing(
            need.check, f"set GEMINI_API_KEY (unset: {need.unset})", blocking=False
        )
    key = settings.gemini_api_key.get_secret_value()
    base = rest_base_url or settings.gemini_base_url
    # A REST call, so the client is built as core's post-call model builds it (httpx).
    verify = settings.gemini_ssl_context() or True
    async with httpx.AsyncClient(timeout=None, verify=verify) as http:
        options = genai_types.HttpOptions(base_url=base or None, httpx_async_client=http)
        client = genai.Client(api_key=key, http_options=options)
        try:
            model = await client.aio.models.get(model=need.model)
        except genai_errors.APIError as exc:
            said = f"Gemini said {exc.code} {exc.status or ''}: {exc.message or ''}"
            return checks.invalid(need.check, checks.scrub(said, [key]))
        except _UNREACHABLE as exc:
            where = base or "Google"
            return checks.invalid(need.check, f"cannot reach {where}: {type(exc).__name__}")
        finally:
            await client.aio.aclose()
            client.close()
    name = f"{need.variable}={need.model}"
    actions = model.supported_actions or []
    if need.method not in actions:
        offered = ", ".join(actions) or "nothing"
        return checks.invalid(need.check, f"{name} does not support {need.method}: {offered}")
    return checks.ok(need.check, f"{name} exists and supports {need.method}")


async def deepgram(settings: MediaSettings) -> Check:
    """The key is Deepgram's: listing its projects needs no audio (and costs nothing)."""
    config = settings.deepgram_config()
    if config is None:
        hint = "set DEEPGRAM_API_KEY (unset: `make run` simulates Deepgram)"
        return checks.missing(DEEPGRAM, hint, blocking=False)
    key = config.api_key.get_secret_value()
    async with httpx.AsyncClient(timeout=None) as http:  # the caller bounds the whole probe
        try:
            page = await config.client(http).manage.v1.projects.list()
        except DeepgramApiError as exc:
            if exc.status_code == 403:  # a listen-only key (usage:write) may not read projects
                return checks.ok(DEEPGRAM, "accepted (scopes too narrow to list projects)")
            body = exc.body if isinstance(exc.body, dict) else {}
            said = f"Deepgram said {exc.status_code}: {body.get('err_msg') or body}"
            return checks.invalid(DEEPGRAM, checks.scrub(said, [key]))
        except _UNREACHABLE as exc:
            where = config.http_base
            return checks.invalid(DEEPGRAM, f"cannot reach {where}: {type(exc).__name__}")
    count = len(page.projects or [])
    return checks.ok(DEEPGRAM, f"accepted ({count} project(s); listening needs usage:write)")


def _scrubbed(check: Check, secret: str) -> Check:
    return Check(check.name, check.status, checks.scrub(check.detail, [secret]), check.blocking)
