"""A loopback fake of Twilio's REST API and of the voice callbacks it sends.

It speaks the wire protocol of docs/protocols.md section E1 (items 1, 2, 5, 6) so the
production `TwilioTelephony` is driven through the real twilio SDK: Basic auth, form
bodies with repeated keys, the account (`Accounts/{AC}.json`, its `status`), the numbers it
owns (`IncomingPhoneNumbers.json?PhoneNumber=`, with `capabilities`; `callagent doctor`
asks both), `Calls.json` / `Calls/{CA}.json` / `Recordings.json` /
`Recordings/{RE}.mp3` (MP3, `audio/mpeg`) and `.wav` or no extension (WAV, `audio/x-wav`),
each with its Content-Length, Twilio-shaped error bodies, and callbacks signed with
`RequestValidator.compute_signature` to the URLs the SDK sent. Calls do not progress by
themselves: a test fires each status, AMD and recording callback, so ordering is explicit;
the simulated world (`sim.carrier`) drives them through the `on_create`/`on_update` hooks.

The server is a small Starlette app under uvicorn on 127.0.0.1 (`sim.loopback`, also
used to serve webhook apps in tests); callbacks go out through httpx.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import email.utils
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from sim import twilio_account
from sim.loopback import LoopbackServer

API = "/2010-04-01/Accounts/{account_sid}"
DEFAULT_NUMBER = twilio_account.DEFAULT_NUMBER
# One silent MPEG-1 Layer III frame (128 kbit/s, 44.1 kHz): 417 bytes, header + zeros.
SILENT_MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)
_EVENT_FOR_STATUS = {
    "initiated": "initiated",
    "ringing": "ringing",
    "in-progress": "answered",
    "completed": "completed",
    "busy": "completed",
    "no-answer": "completed",
    "failed": "completed",
    "canceled": "completed",
}
_ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


def _now_rfc2822() -> str:
    return email.utils.format_datetime(datetime.datetime.now(datetime.UTC))


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedForm:
    """A form body exactly as received: every (name, value) pair in order."""

    fields: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.fields if k == name), None)

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name]

    def names(self) -> set[str]:
        return {k for k, _ in self.fields}


@dataclasses.dataclass(slots=True)
class FakeCall:
    """One create request; `sid` is None when a scripted failure refused it."""

    sid: str | None
    form: RecordedForm
    status: str = "queued"
    sequence: int = 0
    digits: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class CallUpdate:
    """One `POST .../Calls/{CA}.json` that reached an existing call."""

    call_sid: str
    form: RecordedForm


@dataclasses.dataclass(slots=True)
class FakeRecording:
    """One stored recording: its MP3, and its WAV when the carrier captured the audio
    (a recording a test adds from MP3 bytes alone has no WAV: `.wav` answers 404)."""

    sid: str
    call_sid: str
    mp3: bytes
    duration_sec: int
    wav: bytes | None = None
    status: str = "completed"


@dataclasses.dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    code: int
    message: str


class FakeTwilioRest:
    """Twilio's REST API for one account, on loopback. Use as `async with FakeTwilioRest()`.

    `calls` lists every authenticated create request (refused ones with `sid=None`),
    `updates` every update of a known call; `fail_next_create()` scripts Twilio errors.
    """

    def __init__(
        self,
        account_sid: str = "AC" + "0" * 31 + "1",
        auth_token: str = "fake-twilio-auth-token",
        *,
        port: int = 0,
        on_create: Callable[[FakeCall], None] | None = None,
        on_update: Callable[[FakeCall, RecordedForm], None] | None = None,
        max_recordings: int | None = None,
        numbers: dict[str, bool] | None = None,
    ) -> None:
        self.on_create = on_create
        self.on_update = on_update
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.calls: list[FakeCall] = []
        self.updates: list[CallUpdate] = []
        self.recordings: dict[str, FakeRecording] = {}
        self.max_recordings = max_recordings  # a long-running sim forgets the oldest media
        self.unauthorized_requests = 0
        # The account's state and the numbers it owns (E.164 → voice-capable), as doctor reads
        # them; by default the number `TWILIO_FROM_NUMBER` defaults to.
        self.account_status = "active"
        self.numbers = dict(numbers if numbers is not None else {DEFAULT_NUMBER: True})
        self._failures: list[_Failure] = []
        self._validator = RequestValidator(auth_token)
        prefix = API
        app = Starlette(
            routes=[
                Route(f"{prefix}.json", self._fetch_account, methods=["GET"]),
                Route(f"{prefix}/IncomingPhoneNumbers.json", self._list_numbers, methods=["GET"]),
                Route(f"{prefix}/Calls.json", self._create_call, methods=["POST"]),
                Route(f"{prefix}/Calls/{{call_sid}}.json", self._update_call, methods=["POST"]),
                Route(f"{prefix}/Recordings.json", self._list_recordings, methods=["GET"]),
                Route(f"{prefix}/Recordings/{{sid}}.mp3", self._recording_mp3, methods=["GET"]),
                Route(f"{prefix}/Recordings/{{sid}}.wav", self._recording_wav, methods=["GET"]),
                # No extension: Twilio serves the WAV.
                Route(f"{prefix}/Recordings/{{sid}}", self._recording_wav, methods=["GET"]),
            ]
        )
        self._server = LoopbackServer(app, port)
        self.base_url = self._server.base_url
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> FakeTwilioRest:
        await self._server.__aenter__()
        self._http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self._server.__aexit__(exc_type, exc, tb)

    # ---- scripting ------------------------------------------------------------------------

    def fail_next_create(
        self, status: int = 400, code: int = 21211, message: str = "The 'To' number is not valid."
    ) -> None:
        """The next create answers `status` with a Twilio error body (queued, FIFO)."""
        self._failures.append(_Failure(status, code, message))

    def call(self, call_sid: str) -> FakeCall:
        return next(c for c in self.calls if c.sid == call_sid)

    def add_recording(
        self,
        call_sid: str,
        media: bytes = SILENT_MP3_FRAME * 8,
        duration_sec: int = 1,
        *,
        wav: bytes | None = None,
    ) -> FakeRecording:
        """Store a completed recording: `media` is its MP3, `wav` the same audio as WAV."""
        recording = FakeRecording("RE" + uuid.uuid4().hex, call_sid, media, duration_sec, wav)
        self.recordings[recording.sid] = recording
        while self.max_recordings is not None and len(self.recordings) > self.max_recordings:
            del self.recordings[next(iter(self.recordings))]
        return recording

    # ---- callbacks Twilio would send -------------------------------------------------------

    async def post_signed(
        self,
        url: str,
        params: dict[str, str],
        *,
        signed: bool = True,
        signing_token: str | None = None,
    ) -> httpx.Response:
        """POST a form callback the way Twilio does, with `X-Twilio-Signature` of url+params."""
        assert self._http is not None, "use FakeTwilioRest as an async context manager"
        headers = {"User-Agent": "TwilioProxy/1.1"}
        if signed:
            validator = RequestValidator(signing_token) if signing_token else self._validator
            headers["X-Twilio-Signature"] = validator.compute_signature(url, params)
        return await self._http.post(url, data=params, headers=headers)

    async def fire_status(
        self,
        call_sid: str,
        status: str,
        *,
        signed: bool = True,
        signing_token: str | None = None,
        **extra: str,
    ) -> httpx.Response:
        """Send a status callback with `CallStatus=status` (a Twilio word) to the call's
        StatusCallback; refuses an event the call did not ask for, as Twilio would not send it."""
        call = self.call(call_sid)
        url = call.form.get("StatusCallback")
        requested = call.form.getall("StatusCallbackEvent") or ["completed"]
        if url is None or _EVENT_FOR_STATUS[status] not in requested:
            raise ValueError(f"call {call_sid} did not request a {status!r} status callback")
        if status in _ENDED:
            call.status = status
        elif call.status not in _ENDED:
            call.status = status
        params = {
            "CallSid": call_sid,
            "AccountSid": self.account_sid,
            "From": call.form.get("From") or "",
            "To": call.form.get("To") or "",
            "Called": call.form.get("To") or "",
            "Caller": call.form.get("From") or "",
            "CallStatus": status,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
            "Timestamp": _now_rfc2822(),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(call.sequence),
        }
        call.sequence += 1
        params.update(extra)
        return await self.post_signed(url, params, signed=signed, signing_token=signing_token)

    async def fire_amd(
        self, call_sid: str, answered_by: str = "human", duration_ms: int = 2100, **extra: str
    ) -> httpx.Response:
        """Send the async answering-machine-detection result."""
        call = self.call(call_sid)
        url = call.form.get("AsyncAmdStatusCallback")
        if call.form.get("AsyncAmd") != "true" or url is None:
            raise ValueError(f"call {call_sid} did not ask for async AMD")
        params = {
            "CallSid": call_sid,
            "AccountSid": self.account_sid,
            "AnsweredBy": answered_by,
            "MachineDetectionDuration": str(duration_ms),
            **extra,
        }
        return await self.post_signed(url, params)

    async def fire_recording(
        self,
        call_sid: str,
        *,
        media: bytes = SILENT_MP3_FRAME * 8,
        duration_sec: int = 1,
        wav: bytes | None = None,
        **extra: str,
    ) -> httpx.Response:
        """Store a completed recording for the call (`media` its MP3, `wav` its WAV) and
        send its recording status callback."""
        call = self.call(call_sid)
        url = call.form.get("RecordingStatusCallback")
        if call.form.get("Record") != "true" or url is None:
            raise ValueError(f"call {call_sid} did not ask to be recorded")
        recording = self.add_recording(call_sid, media, duration_sec, wav=wav)
        params = {
            "AccountSid": self.account_sid,
            "CallSid": call_sid,
            "RecordingSid": recording.sid,
            "RecordingUrl": f"{self.base_url}{self._api()}/Recordings/{recording.sid}",
            "RecordingStatus": recording.status,
            "RecordingDuration": str(duration_sec),
            "RecordingChannels": "1",
            "RecordingStartTime": _now_rfc2822(),
            "RecordingSource": "OutboundAPI",
            "RecordingTrack": call.form.get("RecordingTrack") or "both",
            "ErrorCode": "0",
            **extra,
        }
        return await self.post_signed(url, params)

    # ---- the REST API ----------------------------------------------------------------------

    def _api(self) -> str:
        return API.format(account_sid=self.account_sid)

    def _refusal(self, request: Request) -> Response | None:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            self.unauthorized_requests += 1
            return _twilio_error(401, 20003, "Authenticate")
        if request.path_params["account_sid"] != self.account_sid:
            return _twilio_error(404, 20404, "The requested resource was not found")
        return None

    async def _create_call(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        form = await _read_form(request)
        if self._failures:
            failure = self._failures.pop(0)
            self.calls.append(FakeCall(None, form, status="refused"))
            return _twilio_error(failure.status, failure.code, failure.message)
        call = FakeCall("CA" + uuid.uuid4().hex, form)
        self.calls.append(call)
        if self.on_create is not None:
            self.on_create(call)
        return JSONResponse(self._call_json(call), status_code=201)

    async def _update_call(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        call_sid = request.path_params["call_sid"]
        call = next((c for c in self.calls if c.sid == call_sid), None)
        if call is None:
            return _twilio_error(404, 20404, "The requested resource was not found")
        form = await _read_form(request)
        self.updates.append(CallUpdate(call_sid, form))
        if call.status in _ENDED:
            return _twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
        if (status := form.get("Status")) in ("completed", "canceled"):
            call.status = status
        if self.on_update is not None:
            self.on_update(call, form)
        if (twiml := form.get("Twiml")) is not None:
            for play in ET.fromstring(twiml).iter("Play"):
                if "digits" in play.attrib:
                    call.digits.append(play.attrib["digits"])
        return JSONResponse(self._call_json(call), status_code=200)

    async def _list_recordings(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        call_sid = request.query_params.get("CallSid")
        page_size = int(request.query_params.get("PageSize", "50"))
        found = [r for r in self.recordings.values() if call_sid in (None, r.call_sid)]
        found = found[:page_size]
        uri = f"{self._api()}/Recordings.json?{urllib.parse.urlencode(request.query_params)}"
        items = [self._recording_json(r) for r in found]
        return JSONResponse(twilio_account.one_page("recordings", items, uri, page_size))

    async def _fetch_account(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        return JSONResponse(
            twilio_account.account_json(self._api(), self.auth_token, self.account_status)
        )

    async def _list_numbers(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        page = twilio_account.numbers_page(self._api(), self.numbers, request.query_params)
        return JSONResponse(page)

    async def _recording_mp3(self, request: Request) -> Response:
        return self._recording_media(request, "mp3")

    async def _recording_wav(self, request: Request) -> Response:
        return self._recording_media(request, "wav")

    def _recording_media(self, request: Request, kind: str) -> Response:
        """The media in the format asked for, with Twilio's Content-Type (Starlette adds
        the Content-Length)."""
        if (refused := self._refusal(request)) is not None:
            return refused
        recording = self.recordings.get(request.path_params["sid"])
        media = None if recording is None else recording.mp3 if kind == "mp3" else recording.wav
        if media is None:
            return _twilio_error(404, 20404, "The requested resource was not found")
        return Response(media, media_type="audio/mpeg" if kind == "mp3" else "audio/x-wav")

    def _call_json(self, call: FakeCall) -> dict[str, Any]:
        now = _now_rfc2822()
        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "status": call.status,
            "to": call.form.get("To"),
            "from": call.form.get("From"),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "uri": f"{self._api()}/Calls/{call.sid}.json",
        }

    def _recording_json(self, recording: FakeRecording) -> dict[str, Any]:
        path = f"{self._api()}/Recordings/{recording.sid}"
        return {
            "sid": recording.sid,
            "account_sid": self.account_sid,
            "call_sid": recording.call_sid,
            "status": recording.status,
            "duration": str(recording.duration_sec),
            "channels": 1,
            "source": "OutboundAPI",
            "date_created": _now_rfc2822(),
            "start_time": _now_rfc2822(),
            "api_version": "2010-04-01",
            "error_code": None,
            "uri": f"{path}.json",
            "media_url": f"{self.base_url}{path}",
        }


async def _read_form(request: Request) -> RecordedForm:
    body = (await request.body()).decode("utf-8")
    return RecordedForm(tuple(urllib.parse.parse_qsl(body, keep_blank_values=True)))


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status)
