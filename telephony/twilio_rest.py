"""The Twilio adapter for the telephony port, on the official SDK's asyncio client.

Every call is placed with inline TwiML that connects a bidirectional Media Stream to
`{public_base_url}/twilio/stream`; our call id and a per-call stream token
(`telephony.stream_tokens`, bound to the call SID once there is one) travel as `<Parameter>`s
because Twilio drops a query string on the stream URL. On the DTMF re-connect built by a media
pod (`stream_owner=`), a `stream_owner` `<Parameter>` names that pod's internal URL (and the
token binds it), so whichever media pod Twilio reaches can hand the stream to the owner. The
status, recording and async-AMD callbacks point at `media.twilio.webhooks` and carry
`?call_id=` so an early callback (Twilio may post `initiated` before `create` has answered)
names its call without a sid lookup.

Twilio's errors are mapped once, here, into `TelephonyError`. A dial is only marked
retryable when Twilio certainly did not place it (5xx/429, connection refused); a timeout
or a dropped connection after the request left is ambiguous and therefore not retryable,
which keeps "one Idempotency-Key, at most one dial" true.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from common import tracing
from telephony import port as telephony
from telephony import stream_tokens

logger = logging.getLogger(__name__)

TWILIO_API_BASE = "https://api.twilio.com"
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
# Twilio answers 21220 ("Call is not in-progress") when asked to change a call that ended.
_CALL_NOT_IN_PROGRESS = 21220
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# A recording is read from the carrier (and passed on) in pieces of at most this size.
RECORDING_CHUNK = 64 * 1024
# How long a stream token in fresh TwiML stays valid: the stream starts when the callee answers
# (ring timeout at most, plus Twilio's queueing), or seconds after a DTMF `<Play>`.
STREAM_TOKEN_TTL_SEC = 600


def _stream_url(public_base_url: str) -> str:
    parts = urllib.parse.urlsplit(public_base_url)
    # Real Twilio needs wss://; ws:// only ever comes from an http:// base on loopback sims.
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/twilio/stream", "", ""))


def stream_twiml(
    public_base_url: str,
    call_id: str,
    stream_token: str,
    *,
    dtmf_digits: str | None = None,
    owner: str | None = None,
) -> str:
    """The TwiML that (optionally plays digits and then) connects the call's media stream;
    `owner` is the internal URL of the media pod the stream must reach (the token binds it)."""
    response = VoiceResponse()
    if dtmf_digits is not None:
        response.play(digits=dtmf_digits)
    stream = response.connect().stream(url=_stream_url(public_base_url))
    stream.parameter(name="call_id", value=call_id)
    stream.parameter(name=stream_tokens.PARAMETER, value=stream_token)
    if owner is not None:
        stream.parameter(name=stream_tokens.OWNER_PARAMETER, value=owner)
    if (parent := tracing.traceparent()) is not None:
        stream.parameter(name=tracing.TRACEPARENT, value=parent)  # media's call span joins
    return str(response.to_xml(xml_declaration=False))


def quiet_sdk_logging() -> None:
    """Keep the SDK's loggers at WARNING and above.

    The SDK logs every request at INFO, about ten lines each, including the URL (which
    carries the Account SID) and the headers. A level someone set explicitly is kept.
    """
    sdk = logging.getLogger("twilio")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.WARNING)


def _basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class HeaderAuthHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's aiohttp client, sending Basic credentials as a header: aiohttp 3.14
    deprecates its `auth=`/`BasicAuth` (removed in 4.0), which the SDK still uses."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature, passed through
        allow_redirects: bool = False,
    ) -> Any:
        if auth is not None:
            headers = {**(headers or {}), "Authorization": _basic_auth(*auth)}
        return await super().request(
            method, url, params, data, headers, None, timeout, allow_redirects
        )


class TwilioTelephony:
    """`telephony.Telephony` over Twilio's REST API (or a loopback fake of it).

    The SDK's `AsyncTwilioHttpClient` opens an aiohttp session in its constructor, which
    needs a running loop, so the client is built on first use rather than here;
    `aclose()` closes that session. Building one quiets the SDK's per-request INFO
    logging for the whole process (`quiet_sdk_logging`). `api_base_url` replaces `https://api.twilio.com`
    (for `sim/` and tests). Keep TWILIO_EDGE/TWILIO_REGION unset with a loopback base:
    the SDK rewrites the host from them. `stream_owner` is set by a media pod: its internal
    websocket URL, named in the DTMF re-connect so the new stream reaches this pod's bridge.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        public_base_url: str,
        api_base_url: str | None = None,
        *,
        ring_timeout_sec: int = 30,
        request_timeout_sec: float = 15.0,
        stream_owner: str | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(public_base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("public_base_url must be an http(s) URL without a query string")
        quiet_sdk_logging()
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._from_number = from_number
        self._public_base_url = public_base_url.rstrip("/")
        self._api_base_url = (api_base_url or TWILIO_API_BASE).rstrip("/")
        self._ring_timeout_sec = ring_timeout_sec
        self._request_timeout_sec = request_timeout_sec
        self._stream_key = stream_tokens.stream_key(auth_token)
        self._stream_owner = stream_owner
        self._http: HeaderAuthHttpClient | None = None
        self._client: Any = None
        self._closed = False

    def __repr__(self) -> str:
        return f"TwilioTelephony(account_sid={self._account_sid!r}, api={self._api_base_url!r})"

    def _twilio(self) -> Any:
        if self._closed:
            raise RuntimeError("TwilioTelephony is closed")
        if self._client is None:
            # No max_retries: the SDK's retry client would re-POST a create and dial twice.
            self._http = HeaderAuthHttpClient()
            client = Client(self._account_sid, self._auth_token, http_client=self._http)
            client.api.base_url = self._api_base_url
            self._client = client
        return self._client

    def _stream_token(
        self, call_id: str, call_sid: str | None = None, owner: str | None = None
    ) -> str:
        expires_at = int(time.time()) + STREAM_TOKEN_TTL_SEC
        return stream_tokens.mint(
            self._stream_key, call_id, expires_at=expires_at, call_sid=call_sid, owner=owner
        )

    def _callback_url(self, path: str, call_id: str) -> str:
        return f"{self._public_base_url}{path}?{urllib.parse.urlencode({'call_id': call_id})}"

    async def dial(self, call_id: str, to: str) -> str:
        client = self._twilio()
        async with self._guard("dial", ambiguous_is_retryable=False):
            call = await client.calls.create_async(
                to=to,
                from_=self._from_number,
                # The SID does not exist yet: this token binds the call id (and expiry) only.
                twiml=stream_twiml(self._public_base_url, call_id, self._stream_token(call_id)),
                status_callback=self._callback_url("/twilio/status", call_id),
                status_callback_event=list(STATUS_CALLBACK_EVENTS),
                status_callback_method="POST",
                timeout=self._ring_timeout_sec,
                record=True,
                recording_track="outbound",
                recording_status_callback=self._callback_url("/twilio/recording-status", call_id),
                machine_detection="DetectMessageEnd",
                async_amd="true",
                async_amd_status_callback=self._callback_url("/twilio/amd", call_id),
                async_amd_status_callback_method="POST",
            )
        sid = str(call.sid)
        logger.info("twilio call created", extra={"call_id": call_id, "call_sid": sid})
        return sid

    async def hang_up(self, call_sid: str) -> None:
        client = self._twilio()
        try:
            async with self._guard("hang_up", ambiguous_is_retryable=True):
                await client.calls(call_sid).update_async(status="completed")
        except telephony.TelephonyError as exc:
            if exc.code != _CALL_NOT_IN_PROGRESS:
                raise
            logger.info("twilio call already ended", extra={"call_sid": call_sid})

    async def send_dtmf(self, call_sid: str, call_id: str, digits: str) -> None:
        twiml = stream_twiml(
            self._public_base_url,
            call_id,
            self._stream_token(call_id, call_sid, self._stream_owner),
            dtmf_digits=telephony.check_dtmf_digits(digits),
            owner=self._stream_owner,
        )
        client = self._twilio()
        async with self._guard("send_dtmf", ambiguous_is_retryable=False):
            await client.calls(call_sid).update_async(twiml=twiml)

    async def list_recordings(self, call_sid: str) -> list[telephony.Recording]:
        client = self._twilio()
        async with self._guard("list_recordings", ambiguous_is_retryable=True):
            records = await client.recordings.list_async(call_sid=call_sid, limit=20)
        return [
            telephony.Recording(
                sid=str(r.sid),
                call_sid=str(r.call_sid),
                status=str(r.status),
                duration_sec=_int_or_none(r.duration),
                # The same URL the recording callback sends as RecordingUrl.
                url=str(r.media_url) if r.media_url else self._recording_url(str(r.sid)),
            )
            for r in records
        ]

    def _recording_url(self, recording_sid: str) -> str:
        account = f"{self._api_base_url}/2010-04-01/Accounts/{self._account_sid}"
        return f"{account}/Recordings/{recording_sid}"

    @contextlib.asynccontextmanager
    async def open_recording(self, recording_sid: str) -> AsyncIterator[telephony.RecordingMedia]:
        """GET `.mp3` and hand its body on as it arrives; each read is bounded in time
        separately, so a long recording is not cut off by the request timeout."""
        self._twilio()
        assert self._http is not None and self._http.session is not None
        session = self._http.session
        headers = {"Authorization": _basic_auth(self._account_sid, self._auth_token)}
        async with contextlib.AsyncExitStack() as stack:
            async with self._guard("fetch_recording", ambiguous_is_retryable=True):
                # Real Twilio may redirect to storage; aiohttp follows, dropping auth cross-host.
                resp = await stack.enter_async_context(
                    session.get(f"{self._recording_url(recording_sid)}.mp3", headers=headers)
                )
                if resp.status != 200:
                    raise telephony.TelephonyError(
                        f"recording fetch answered HTTP {resp.status}",
                        retryable=resp.status in _RETRYABLE_STATUSES,
                        status=resp.status,
                    )
            # aiohttp undoes a Content-Encoding, after which the length would be wrong.
            encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
            yield telephony.RecordingMedia(
                content_type=resp.headers.get("Content-Type", "audio/mpeg"),
                content_length=None if encoded else resp.content_length,
                chunks=self._chunks(resp),
            )

    async def _chunks(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        while True:
            async with self._guard("fetch_recording", ambiguous_is_retryable=True):
                chunk = await resp.content.read(RECORDING_CHUNK)
            if not chunk:
                return
            yield bytes(chunk)

    def _guard(
        self, operation: str, *, ambiguous_is_retryable: bool
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return _wrap_errors(
            operation,
            ambiguous_is_retryable=ambiguous_is_retryable,
            timeout_sec=self._request_timeout_sec,
        )

    async def aclose(self) -> None:
        self._closed = True
        if self._http is not None:
            http, self._http, self._client = self._http, None, None
            await http.close()


@contextlib.asynccontextmanager
async def _wrap_errors(
    operation: str, *, ambiguous_is_retryable: bool, timeout_sec: float
) -> AsyncIterator[None]:
    """Bound one request in time and map twilio/aiohttp failures to `TelephonyError`.

    `ambiguous_is_retryable` says whether a failure after the request may have reached
    Twilio (a timeout, a dropped connection) can be retried without doubling its effect.
    """
    try:
        # The SDK passes no timeout to aiohttp (whose default is 5 minutes), so bound it here.
        async with asyncio.timeout(timeout_sec):
            yield
    except telephony.TelephonyError:
        raise
    except TwilioRestException as exc:
        status = int(exc.status)
        raise telephony.TelephonyError(
            f"twilio {operation} failed: {exc.msg}",
            retryable=status in _RETRYABLE_STATUSES,
            status=status,
            code=_int_or_none(exc.code),
        ) from exc
    except TwilioServiceException as exc:
        status = int(exc.status)
        raise telephony.TelephonyError(
            f"twilio {operation} failed: {exc.title}",
            retryable=status in _RETRYABLE_STATUSES,
            status=status,
            code=_int_or_none(exc.code),
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        # The connection was never made, so Twilio cannot have acted on the request.
        raise telephony.TelephonyError(
            f"twilio {operation}: cannot connect", retryable=True
        ) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise telephony.TelephonyError(
            f"twilio {operation}: transport failed ({type(exc).__name__})",
            retryable=ambiguous_is_retryable,
        ) from exc


def _int_or_none(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value))
    except ValueError:
        return None
