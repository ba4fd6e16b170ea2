"""The carrier side of a Twilio Media Stream: a websocket CLIENT that behaves like Twilio.

It connects to the bridge's `/twilio/stream` with a valid `X-Twilio-Signature` (or a bad one,
on request), sends `connected` and `start` with the call id as a custom parameter, then one
160-byte μ-law `media` frame every 20 ms on the monotonic clock: silence (0xFF) unless a test
queued speech with `speak()`. What the bridge sends back is recorded in arrival order
(`outbound`), and played like a phone would: a simulated playout cursor consumes one received
frame per 20 ms (`heard`), echoes a `mark` once everything before it has played, and on
`clear` drops every unplayed frame and echoes all pending marks at once (protocols.md A4, E1).
`restart()` is what Twilio does after `<Play digits>` + a new `<Connect><Stream>`: `stop`,
close, and a new stream (new stream sid) for the same call. Every message both ways is checked
against Twilio's documented shapes (`sim.stream_wire`) into `violations`; a bridge message
Twilio would refuse (31950/31951) is ignored, as Twilio ignores it.

The `start` carries `parameters` as Twilio would echo the TwiML's `<Parameter>`s: the call id
and, unless a test says otherwise (`stream_token=`, "" for none), a valid stream token for the
call as core would mint it. A test may change `parameters` before `restart()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Literal

from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from media.codec import twilio_codec
from sim.stream_wire import StreamWire, Violation
from telephony import stream_tokens

FRAME = 160
FRAME_S = 0.02
SILENCE = b"\xff" * FRAME


def mint_token(
    auth_token: str, call_id: str, call_sid: str | None = None, *, ttl_s: int = 600
) -> str:
    """A stream token for `call_id` as core puts it in the TwiML (negative `ttl_s`: expired)."""
    key = stream_tokens.stream_key(auth_token)
    return stream_tokens.mint(key, call_id, expires_at=int(time.time()) + ttl_s, call_sid=call_sid)


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """One message from the bridge: `kind` media/mark/clear, on stream number `stream`."""

    kind: Literal["media", "mark", "clear"]
    at: float  # time.monotonic() on arrival
    stream: int
    payload: bytes = b""
    name: str = ""
    frame: int = 0  # caller frames sent before it arrived: where on the stream it came


class TwilioStreamClient:
    """One call's Media Streams as Twilio would run them; `async with` connects the first."""

    def __init__(
        self,
        url: str,
        auth_token: str,
        call_id: str,
        *,
        call_sid: str = "CA" + "0" * 32,
        account_sid: str = "AC" + "0" * 32,
        signature: str | None = None,
        extra_parameters: dict[str, str] | None = None,
        stream_token: str | None = None,
        play_delay_frames: int = 0,
    ) -> None:
        self.url = url
        # Twilio's jitter buffer: what arrives plays (and marks echo) this many frames later.
        self.play_delay_frames = play_delay_frames
        self.heard_at_frame: list[int] = []  # the stream frame each heard frame played in
        self.auth_token = auth_token
        self.call_id = call_id
        self.call_sid = call_sid
        self.account_sid = account_sid
        self._signature = signature
        if stream_token is None:
            stream_token = mint_token(auth_token, call_id)
        token = {stream_tokens.PARAMETER: stream_token} if stream_token else {}
        self.parameters = {"call_id": call_id, **token, **(extra_parameters or {})}
        self._sids = (f"MZ{n:032x}" for n in itertools.count(1))
        self.stream_sid = ""
        self.streams = 0
        self.outbound: list[Received] = []
        self.heard: list[bytes] = []
        self.echoed: list[str] = []
        self.sent_frames = 0
        self.sent_at: list[float] = []  # monotonic send time of every inbound media frame
        self._speech: collections.deque[bytes] = collections.deque()
        self._unplayed: collections.deque[Received] = collections.deque()
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()
        self.on_receive: Callable[[Received], None] | None = None
        self.wire = StreamWire()
        self.violations: list[Violation] = []

    async def __aenter__(self) -> TwilioStreamClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- driving ---------------------------------------------------------------------------

    def signature_for(self, url: str) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(url, {}))

    async def connect(self) -> None:
        """Open a new stream for the call and start the 20 ms clock."""
        header = self._signature if self._signature is not None else self.signature_for(self.url)
        self._ws = await connect(
            self.url, additional_headers={"X-Twilio-Signature": header}, compression=None
        )
        self.stream_sid = next(self._sids)
        self.streams += 1
        self._seq = itertools.count(1)
        self.wire = StreamWire()
        await self._send(self._ws, twilio_codec.connected())
        await self._send(
            self._ws,
            twilio_codec.start(
                self.stream_sid,
                self.call_sid,
                self.account_sid,
                self.parameters,
                seq=next(self._seq),
            ),
        )
        stream = self.streams
        self._tasks = [
            asyncio.create_task(self._receive(self._ws, stream), name="twilio-stream-recv"),
            asyncio.create_task(self._clock(self._ws), name="twilio-stream-clock"),
        ]

    def speak(self, mulaw: bytes) -> None:
        """Queue caller audio; it goes out in 20 ms frames in place of silence."""
        for i in range(0, len(mulaw), FRAME):
            self._speech.append(mulaw[i : i + FRAME].ljust(FRAME, b"\xff"))

    @property
    def speaking(self) -> bool:
        return bool(self._speech)

    async def dtmf(self, digit: str) -> None:
        assert self._ws is not None
        await self._send(self._ws, twilio_codec.dtmf(self.stream_sid, next(self._seq), digit))

    async def stop(self) -> None:
        """Send `stop` and close the socket, as Twilio does when the stream ends."""
        ws, self._ws = self._ws, None
        await self._stop_tasks()
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._send(
                    ws,
                    twilio_codec.stop(
                        self.stream_sid, next(self._seq), self.account_sid, self.call_sid
                    ),
                )
            await ws.close()
        self._unplayed.clear()
        self._notify()

    async def restart(self) -> None:
        """The stream is replaced (after DTMF): stop this one, then start a new one."""
        await self.stop()
        await self.connect()

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        await self._stop_tasks()
        if ws is not None:
            await ws.close()

    # ---- observations ----------------------------------------------------------------------

    def media(self, stream: int | None = None) -> list[Received]:
        return [r for r in self.outbound if r.kind == "media" and stream in (None, r.stream)]

    def kinds(self) -> list[str]:
        return [r.kind for r in self.outbound]

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until `condition()` holds; re-checked after every message and every frame."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_closed(self, timeout_s: float = 10.0) -> int | None:
        """Wait until the bridge closes the current socket; return its close code."""
        ws = self._ws
        assert ws is not None
        async with asyncio.timeout(timeout_s):
            await ws.wait_closed()
        return ws.close_code

    # ---- the wire --------------------------------------------------------------------------

    async def _receive(self, ws: ClientConnection, stream: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                refused = self.wire.bridge_sent(raw)
                self.violations += refused
                if any(v.ignored for v in refused):
                    continue  # Twilio logs 31950/31951 and drops the message
                event = twilio_codec.parse_outbound(raw)
                now = time.monotonic()
                at = self.sent_frames
                if isinstance(event, twilio_codec.OutboundMedia):
                    item = Received("media", now, stream, payload=event.payload, frame=at)
                elif isinstance(event, twilio_codec.OutboundMark):
                    item = Received("mark", now, stream, name=event.name, frame=at)
                elif isinstance(event, twilio_codec.OutboundClear):
                    item = Received("clear", now, stream, frame=at)
                else:
                    continue
                self.outbound.append(item)
                if self.on_receive is not None:
                    self.on_receive(item)
                if item.kind == "clear":
                    marks = [r.name for r in self._unplayed if r.kind == "mark"]
                    self._unplayed.clear()
                    for name in marks:
                        await self._echo(ws, name)
                else:
                    self._unplayed.append(item)
                    await self._echo_due(ws)
                self._notify()
        self._notify()

    async def _clock(self, ws: ClientConnection) -> None:
        """Every 20 ms: send one caller frame and play one received frame."""
        started = time.monotonic()
        with contextlib.suppress(ConnectionClosed):
            for n in itertools.count():
                payload = self._speech.popleft() if self._speech else SILENCE
                seq = next(self._seq)
                self.sent_at.append(time.monotonic())
                await self._send(
                    ws, twilio_codec.inbound_media(self.stream_sid, seq, n + 1, n * 20, payload)
                )
                self.sent_frames += 1
                await self._echo_due(ws)  # marks reached before this frame plays
                if self._unplayed and self._unplayed[0].kind == "media" and self._due():
                    self.heard.append(self._unplayed.popleft().payload)
                    self.heard_at_frame.append(n)
                self._notify()
                await self._echo_due(ws)
                await asyncio.sleep(max(0.0, started + (n + 1) * FRAME_S - time.monotonic()))

    def _due(self) -> bool:
        return self._unplayed[0].frame + self.play_delay_frames <= self.sent_frames

    async def _echo_due(self, ws: ClientConnection) -> None:
        while self._unplayed and self._unplayed[0].kind == "mark" and self._due():
            await self._echo(ws, self._unplayed.popleft().name)

    async def _echo(self, ws: ClientConnection, name: str) -> None:
        self.echoed.append(name)
        await self._send(ws, twilio_codec.mark_echo(self.stream_sid, next(self._seq), name))
        self._notify()

    async def _send(self, ws: ClientConnection, raw: str) -> None:
        self.violations += self.wire.carrier_sends(raw)
        await ws.send(raw)

    async def _stop_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _notify(self) -> None:
        self._changed.set()
