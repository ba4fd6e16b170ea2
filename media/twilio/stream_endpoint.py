"""The `/twilio/stream` websocket: Twilio's Media Streams in, per-call bridges out.

The upgrade request must carry an `X-Twilio-Signature` that Twilio computed over the exact
`wss://` URL it connected to (rebuilt from `public_base_url`, because a proxy changes the Host
and scheme we see); anything else is refused with 403 before the socket opens. Then Twilio
sends `connected` and `start`, whose `customParameters.call_id` names our call.

That signature is the same for every call (so is the URL), so it cannot say which call a
socket is for: one captured upgrade header would let anyone name a live call id and take its
audio. Each stream is therefore bound to its call before it may carry a frame:
- `customParameters.stream_token` must be the call's token (`telephony.stream_tokens`, minted by
  core into the TwiML: call id + expiry, plus the call SID on the DTMF re-connect);
- `start.callSid` must be the call's SID: the live bridge's for a re-attach, and core's (sent
  back with the task) for a new bridge, checked before the model is even started;
- a call has at most one live stream: a second socket is refused unless the first has stopped
  or dropped, which is exactly when the re-attach after DTMF (or a blip) arrives.
A refused socket is closed without a frame sent (1008; 1013 for a new call while the process
drains, see `media.drain`); the warning names the call id only.

A call can have several streams in a row: pressing keys (DTMF) replaces the call's TwiML with
`<Play digits/>` followed by a fresh `<Connect><Stream>` carrying the same `call_id`, so the
old stream sends `stop` and a new one starts seconds later. The per-process `BridgeRegistry`
therefore keys bridges by call id and re-attaches a new stream to the live bridge instead of
starting a second conversation; the bridge itself is owned by the registry, not by the socket
handler, so it survives the gap. With several media pods behind one public URL that new stream
may reach another pod: the re-connect's token names the owner (its internal URL), and a pod
that is not the owner and has no live bridge for the call relays the stream there
(`media.twilio.stream_relay`) instead of opening the call a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse

from starlette.types import Message, Receive, Scope, Send

from common import logs, metrics, tracing
from common.aio import cancel_and_wait
from media.call import core_link
from media.call.bridge import CallBridge
from media.call.deps import BridgeDeps
from media.codec import twilio_codec
from media.twilio import stream_relay
from media.twilio.webhooks import SIGNATURE_HEADER, signature_valid_for_websocket
from telephony import stream_tokens

logger = logging.getLogger(__name__)

STREAM_PATH = "/twilio/stream"
RELAYED = stream_relay.RELAYED_HEADER
_START_TIMEOUT_S = 10.0
_AMD_KEEP_S = 120.0  # an AMD result may beat the stream's start; keep it this long


def stream_url(public_base_url: str) -> str:
    """The websocket URL Twilio connects to (and signs): http -> ws, https -> wss."""
    parts = urllib.parse.urlsplit(public_base_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + STREAM_PATH, "", ""))


class WebSocketLeg:
    """One Twilio stream socket as the bridge's `StreamLeg`; send failures mark it closed."""

    def __init__(self, send: Send, stream_sid: str) -> None:
        self._send = send
        self._stream_sid = stream_sid
        self.closed = False

    @property
    def stream_sid(self) -> str:
        return self._stream_sid

    async def send(self, text: str) -> bool:
        if self.closed:
            return False
        try:
            await self._send({"type": "websocket.send", "text": text})
        except (OSError, RuntimeError):  # uvicorn's ClientDisconnected is an OSError
            self.closed = True
            return False
        return True

    async def close(self, code: int = 1000) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError, RuntimeError):
                await self._send({"type": "websocket.close", "code": code})


class StreamRefused(Exception):
    """A started stream may not speak for the call it names; `reason` is static, safe to log.

    `code` is the websocket close code: 1008 (policy) for a stream that may not speak for the
    call, 1013 (try again later) for a new call refused while this process drains."""

    def __init__(self, reason: str, code: int = 1008) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class BridgeRegistry:
    """The live calls of this media process, by call id; owns every bridge's task."""

    def __init__(self, deps: BridgeDeps | None = None) -> None:
        self._deps = deps
        self._bridges: dict[str, CallBridge] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._amd: dict[str, tuple[str, float]] = {}
        self._closed = False
        self._draining = False

    @property
    def bridges(self) -> dict[str, CallBridge]:
        return self._bridges

    def is_live(self, call_id: str) -> bool:
        """Whether a bridge for the call runs here (a re-connect then attaches locally)."""
        bridge = self._bridges.get(call_id)
        return bridge is not None and not bridge.done

    def bind(self, deps: BridgeDeps) -> None:
        """Provide the shared dependencies (built in the app's lifespan, after routing)."""
        self._deps = deps

    def open_stream(self, start: twilio_codec.Start, leg: WebSocketLeg) -> CallBridge:
        """Attach a started (token-checked) stream to its call's bridge, creating it if needed.

        Raises:
            StreamRefused: shutting down, draining (a new call), or the call is live here
                on another SID or stream.
        """
        call_id = start.custom_parameters.get("call_id", "")
        if self._closed or self._deps is None:
            raise StreamRefused("not serving")
        bridge = self._bridges.get(call_id)
        if bridge is not None and not bridge.done:
            if bridge.call_sid != start.call_sid:
                raise StreamRefused("not the call's sid")
            if bridge.streaming:
                raise StreamRefused("the call already has a live stream")
            bridge.attach_stream(leg)
            return bridge
        if self._draining:
            raise StreamRefused("draining", code=1013)
        bridge = CallBridge(self._deps, call_id, start.call_sid, leg)
        self._bridges[call_id] = bridge
        amd = self._amd.pop(start.call_sid, None)
        if amd is not None:
            bridge.on_amd(amd[0])
        parent = start.custom_parameters.get(tracing.TRACEPARENT)
        task = asyncio.create_task(self._run(bridge, parent), name=f"call-{call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return bridge

    def on_amd(self, call_sid: str, answered_by: str) -> None:
        """Twilio's async AMD result: to the local bridge now, or kept for its stream."""
        for bridge in self._bridges.values():
            if bridge.call_sid == call_sid and not bridge.done:
                bridge.on_amd(answered_by)
                return
        now = time.monotonic()
        self._amd = {sid: v for sid, v in self._amd.items() if now - v[1] < _AMD_KEEP_S}
        self._amd[call_sid] = (answered_by, now)

    async def _run(self, bridge: CallBridge, traceparent: str | None = None) -> None:
        """Run a call in its own task: counted live, its log lines tagged, its span a child of
        core's dial (the traceparent core put in the TwiML)."""
        logs.bind(call_id=bridge.call_id)
        parent = tracing.extract({tracing.TRACEPARENT: traceparent} if traceparent else {})
        try:
            with (
                metrics.ACTIVE_CALLS.track_inprogress(),
                tracing.tracer().start_as_current_span(
                    "media call",
                    context=parent,
                    attributes={"callagent.process": "media", "callagent.call_id": bridge.call_id},
                ),
            ):
                await bridge.run()
        finally:
            if self._bridges.get(bridge.call_id) is bridge:
                del self._bridges[bridge.call_id]

    def stop_accepting(self) -> None:
        """Drain: refuse streams of new calls; the calls live here keep re-attaching theirs."""
        self._draining = True

    def shut_down_all(self, outcome: core_link.Outcome, *, goodbye: bool) -> None:
        """End every live call with `outcome` (see `CallBridge.shut_down`)."""
        for bridge in list(self._bridges.values()):
            if not bridge.done:
                bridge.shut_down(outcome, goodbye=goodbye)

    async def wait_idle(self) -> None:
        """Until no call runs here any more."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        """Stop every call (process shutdown): their sockets close, Twilio ends the calls."""
        self._closed = True
        await cancel_and_wait(*self._tasks)


class StreamEndpoint:
    """The `/twilio/stream` ASGI app.

    A raw ASGI handler rather than a Starlette `WebSocketRoute`: it is the hottest path of
    the process (~100 messages a second per call) and Starlette's per-message wrappers
    (middleware `send` wrappers, the `WebSocket` state machine) measurably cost CPU there.
    `media.server` dispatches to it ahead of the Starlette app.
    """

    def __init__(
        self, auth_token: str, public_base_url: str, registry: BridgeRegistry, internal_url: str
    ) -> None:
        self._auth_token = auth_token
        self._signed_url = stream_url(public_base_url)
        self._stream_key = stream_tokens.stream_key(auth_token)
        self._registry = registry
        self._internal_url = internal_url.rstrip("/")  # as it names this pod in tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or (await receive())["type"] != "websocket.connect":
            return
        raw_query = scope.get("query_string", b"").decode("latin-1")
        url = self._signed_url + (f"?{raw_query}" if raw_query else "")
        signature = _header(scope, SIGNATURE_HEADER)
        if not signature_valid_for_websocket(self._auth_token, url, signature):
            logger.warning("media stream upgrade with invalid signature")
            await send({"type": "websocket.close", "code": 1008})  # HTTP 403 before accept
            return
        await send({"type": "websocket.accept"})
        leg: WebSocketLeg | None = None
        bridge: CallBridge | None = None
        try:
            opening: list[str | bytes] = []
            start = await _read_start(receive, opening)
            if start is None:
                return
            leg = WebSocketLeg(send, start.stream_sid)
            call_id = start.custom_parameters.get("call_id", "")
            try:
                owner = self._relay_target(
                    self._check(start), call_id, relayed=_header(scope, RELAYED) is not None
                )
                if owner is not None:
                    owner_url = owner + STREAM_PATH + (f"?{raw_query}" if raw_query else "")
                    code = await stream_relay.relay(
                        owner_url, signature, opening, receive, send, call_id
                    )
                    await leg.close(code)
                    return
                bridge = self._registry.open_stream(start, leg)
            except StreamRefused as exc:
                logger.warning(
                    "media stream refused", extra={"call_id": call_id, "reason": exc.reason}
                )
                await leg.close(code=exc.code)  # nothing was sent on it
                return
            await _pump(receive, bridge)
        finally:
            if bridge is not None and leg is not None:
                bridge.stream_ended(leg)
            await (leg or WebSocketLeg(send, "")).close()

    def _check(self, start: twilio_codec.Start) -> str | None:
        """Check the stream's binding to its call (see the module docstring); return the
        owner its token names (a DTMF re-connect's), else None."""
        params = start.custom_parameters
        call_id = params.get("call_id", "")
        if not call_id:
            raise StreamRefused("no call id")
        token = params.get(stream_tokens.PARAMETER)
        owner = params.get(stream_tokens.OWNER_PARAMETER)
        try:
            return stream_tokens.check(
                self._stream_key, token, call_id, start.call_sid, now=time.time(), owner=owner
            )
        except stream_tokens.StreamTokenRefused as exc:
            raise StreamRefused(f"stream token {exc.reason}") from None

    def _relay_target(self, owner: str | None, call_id: str, *, relayed: bool) -> str | None:
        """The owner to relay this stream to: a re-connect for another pod's call with no
        live bridge here; None to handle it here. A relayed stream that lands on a pod that
        does not own its call is refused rather than relayed again or opened a second time.

        Raises:
            StreamRefused: a relayed stream for a call this pod does not own.
        """
        if owner is None or owner == self._internal_url or self._registry.is_live(call_id):
            return None
        if relayed:
            raise StreamRefused("relayed to a pod that does not own the call")
        if not owner.startswith(("ws://", "wss://")):
            raise StreamRefused("the owner is not a websocket URL")
        return owner


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in scope.get("headers", ()):
        if key == wanted:
            return bytes(value).decode("latin-1")
    return None


def _payload(message: Message) -> str | bytes:
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


async def _read_start(receive: Receive, opening: list[str | bytes]) -> twilio_codec.Start | None:
    """Skip `connected`; return the `start` (None if the stream never starts properly).
    What was read is appended to `opening`, for a relay to replay."""
    try:
        async with asyncio.timeout(_START_TIMEOUT_S):
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return None
                payload = _payload(message)
                opening.append(payload)
                event = twilio_codec.parse(payload)
                if isinstance(event, twilio_codec.Start):
                    return event
                if not isinstance(event, twilio_codec.Connected):
                    logger.warning("media stream sent %s before start", type(event).__name__)
                    return None
    except (TimeoutError, twilio_codec.CodecError):
        logger.warning("media stream did not start")
        return None


async def _pump(receive: Receive, bridge: CallBridge) -> None:
    """Feed Twilio's events to the bridge until `stop` or the socket closes."""
    parse = twilio_codec.parse
    media_type = twilio_codec.Media  # local aliases on the per-frame path
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        try:
            event = parse(_payload(message))
        except twilio_codec.CodecError:
            logger.warning("malformed media stream message", extra={"call_id": bridge.call_id})
            continue
        if type(event) is media_type:
            await bridge.on_media(event.payload)
        elif isinstance(event, twilio_codec.Mark):
            bridge.on_mark(event.name)
        elif isinstance(event, twilio_codec.Stop):
            return
        elif isinstance(event, twilio_codec.Dtmf):
            logger.info("callee pressed a key", extra={"call_id": bridge.call_id})
