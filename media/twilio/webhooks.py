"""Twilio's voice callbacks (call status, async AMD, recording status), signature-checked.

Anyone can POST to a public URL, so every request must carry an `X-Twilio-Signature`
that `twilio.request_validator.RequestValidator` accepts for the URL Twilio *requested*.
Behind a proxy the Host header and scheme are not that URL, so it is rebuilt from the
configured `public_base_url` plus the request path and raw query string. A request that
fails the check gets 403 and reaches nobody.

A valid callback becomes one typed `TelephonyEvent` and is handed to a `TelephonySink`
(in production a gRPC sink into core). The 204 is sent only after the sink accepted the
event: answering 2xx first would drop it silently if core were unreachable, whereas a
5xx shows up in Twilio's debugger. Twilio's CallStatus words are translated into ours by
the pure `map_call_status()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from starlette.applications import Starlette
from starlette.datastructures import MultiDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from twilio.request_validator import RequestValidator

logger = logging.getLogger(__name__)

EventKind = Literal["status", "amd", "recording"]
CallStatus = Literal[
    "dialing", "ringing", "in_progress", "completed", "busy", "no_answer", "failed", "cancelled"
]
SIGNATURE_HEADER = "X-Twilio-Signature"
MAX_BODY_BYTES = 64 * 1024

_TWILIO_TO_OURS: dict[str, CallStatus] = {
    "queued": "dialing",
    "initiated": "dialing",
    "ringing": "ringing",
    "in-progress": "in_progress",
    "completed": "completed",
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "failed",
    "canceled": "cancelled",
}


def map_call_status(twilio_status: str) -> CallStatus | None:
    """Our status for a Twilio `CallStatus` value, or None for a word Twilio may add later."""
    return _TWILIO_TO_OURS.get(twilio_status)


@dataclasses.dataclass(frozen=True, slots=True)
class TelephonyEvent:
    """One signature-checked Twilio callback, typed.

    `call_id` comes from the `?call_id=` our adapter puts on every callback URL (None if
    absent). `status` is set for `kind="status"` (mapped by `map_call_status`);
    `recording_status` is Twilio's `RecordingStatus` for `kind="recording"`. `raw` keeps
    every form field (last value wins) for audit and for fields not lifted out here.
    """

    kind: EventKind
    call_sid: str
    call_id: str | None
    status: CallStatus | None
    sequence_number: int | None
    duration_sec: int | None
    answered_by: str | None
    recording_sid: str | None
    recording_url: str | None
    recording_duration: int | None
    raw: dict[str, str]
    recording_status: str | None = None


class TelephonySink(Protocol):
    """Where valid callbacks go. Raising (or taking too long) makes the webhook answer 503."""

    async def deliver(self, event: TelephonyEvent) -> None: ...


def signature_valid(auth_token: str, url: str, params: object, header: str | None) -> bool:
    """Whether `header` is Twilio's signature of `url` + `params` under `auth_token`."""
    if not header:
        return False
    return bool(RequestValidator(auth_token).validate(url, params, header))


def signature_valid_for_websocket(auth_token: str, url: str, header: str | None) -> bool:
    """Check the `X-Twilio-Signature` of a Media Streams upgrade: the `wss://` URL Twilio
    connected to (including any query string), signed with no parameters."""
    return signature_valid(auth_token, url, {}, header)


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _opt(value: str | None) -> str | None:
    return value if value else None


def event_from_form(
    kind: EventKind, form: MultiDict, query: dict[str, str]
) -> TelephonyEvent | None:
    """The typed event for a callback's form fields, or None if it names no call."""
    call_sid = form.get("CallSid")
    if not call_sid:
        return None
    raw = {key: str(value) for key, value in form.items()}
    status: CallStatus | None = None
    if kind == "status":
        status = map_call_status(raw.get("CallStatus", ""))
        if status is None:
            logger.warning("unknown twilio call status", extra={"call_sid": call_sid})
    return TelephonyEvent(
        kind=kind,
        call_sid=call_sid,
        call_id=_opt(query.get("call_id")),
        status=status,
        sequence_number=_int(raw.get("SequenceNumber")),
        duration_sec=_int(raw.get("CallDuration") or raw.get("Duration")),
        answered_by=_opt(raw.get("AnsweredBy")),
        recording_sid=_opt(raw.get("RecordingSid")),
        recording_url=_opt(raw.get("RecordingUrl")),
        recording_duration=_int(raw.get("RecordingDuration")),
        raw=raw,
        recording_status=_opt(raw.get("RecordingStatus")) if kind == "recording" else None,
    )


def _error(status_code: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"code": code, "message": message}}, status_code=status_code)


def _handler(
    kind: EventKind,
    auth_token: str,
    public_base_url: str,
    sink: TelephonySink,
    deliver_timeout_sec: float,
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "PAYLOAD_TOO_LARGE", "Callback body is too large.")
        raw_query = request.scope.get("query_string", b"").decode("latin-1")
        url = public_base_url + request.url.path + (f"?{raw_query}" if raw_query else "")
        form = MultiDict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), True))
        if not signature_valid(auth_token, url, form, request.headers.get(SIGNATURE_HEADER)):
            logger.warning("twilio callback with invalid signature", extra={"kind": kind})
            return _error(
                403, "INVALID_TWILIO_SIGNATURE", "X-Twilio-Signature is missing or invalid."
            )
        query = dict(urllib.parse.parse_qsl(raw_query, True))
        event = event_from_form(kind, form, query)
        if event is None:
            return _error(400, "INVALID_TWILIO_CALLBACK", "The callback has no CallSid.")
        try:
            async with asyncio.timeout(deliver_timeout_sec):
                await sink.deliver(event)
        except Exception:
            logger.exception(
                "telephony event not delivered",
                extra={"kind": kind, "call_sid": event.call_sid, "call_id": event.call_id},
            )
            return _error(503, "EVENT_NOT_DELIVERED", "The event could not be recorded.")
        return Response(status_code=204)

    return handle


def twilio_webhook_routes(
    auth_token: str,
    public_base_url: str,
    sink: TelephonySink,
    *,
    deliver_timeout_sec: float = 10.0,
) -> list[BaseRoute]:
    """POST routes `/twilio/status`, `/twilio/recording-status` and `/twilio/amd`.

    `public_base_url` is the scheme://host[:port][/prefix] Twilio is told to call (the same
    value the telephony adapter uses); mount the routes at the root of the media app.
    """
    if urllib.parse.urlsplit(public_base_url).query:
        raise ValueError("public_base_url must not carry a query string")
    base = public_base_url.rstrip("/")
    paths: dict[str, EventKind] = {
        "/twilio/status": "status",
        "/twilio/recording-status": "recording",
        "/twilio/amd": "amd",
    }
    return [
        Route(path, _handler(kind, auth_token, base, sink, deliver_timeout_sec), methods=["POST"])
        for path, kind in paths.items()
    ]


def twilio_webhook_app(auth_token: str, public_base_url: str, sink: TelephonySink) -> Starlette:
    """A Starlette app serving only the Twilio callbacks (tests and stand-alone use)."""
    return Starlette(routes=twilio_webhook_routes(auth_token, public_base_url, sink))
