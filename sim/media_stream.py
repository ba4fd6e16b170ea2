"""The carrier's side of one Twilio Media Stream: the simulated phone line to the bridge.

For a `<Connect><Stream>` verb Twilio dials *out* to the bridge's websocket, signs the upgrade
with `X-Twilio-Signature` (the URL, no parameters), sends `connected` and `start`, then one
160-byte μ-law `media` frame every 20 ms, and plays what the bridge sends back. `StreamLeg`
does exactly that (protocols.md A4, E1.3-5) on one clock: each tick sends the next frame of
the callee's voice (or the line's background noise) and plays the next 20 ms of the bridge's
audio, echoing a `mark` once the audio queued before it has played and every pending mark at
once on `clear`. Played audio is "what the callee heard": it goes into the call's `Recorder`,
and its voiced runs become `AgentStarted` / `AgentFinished` events for the callee's policy;
a new utterance inside a run (after a played mark or a clear) is an `AgentTurn`, so every
agent line gets its own start on the recording.
Every sent frame is registered in the world's `FrameIndex` before it leaves. Every message,
both ways, is checked against Twilio's documented shapes (`sim.stream_wire`); a violation is
recorded on the leg, and a bridge message Twilio would refuse is ignored, as Twilio does.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import io
import logging
import uuid
import wave
from collections.abc import Callable

import numpy as np
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sim import codec, voice
from sim.stream_wire import StreamWire, Violation
from sim.world import FRAME_BYTES, Conversation, FrameIndex, Line

logger = logging.getLogger(__name__)

TICK_S = 0.02
# A phone network's clock never waits for us: after a stall of this process the frames it
# missed are sent at once, as a reader behind on its socket would find them queued (and the
# media clock, the ear's byte count and the recording stay in step). Only a stall longer than
# this (a suspended machine) restarts the clock instead of bursting.
MAX_CATCH_UP_S = 2.0
MAX_VIOLATIONS_KEPT = 50  # a bridge sending bad audio would otherwise add 50 a second
_SILENT_FRAME = bytes([codec.MULAW_SILENCE]) * FRAME_BYTES


@dataclasses.dataclass(frozen=True, slots=True)
class AgentStarted:
    """The callee started hearing the agent, `at_s` seconds into the recording."""

    at_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class AgentTurn:
    """The agent's next utterance started `at_s` seconds into the recording with no pause
    the callee could notice: the bridge's `mark` (or `clear`) came between the two. The one
    before it was last heard at `prev_end_s`."""

    at_s: float
    prev_end_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class AgentFinished:
    """The agent went quiet at `end_s` (recording seconds); the callee heard `heard_s`
    seconds of it since `AgentStarted`."""

    heard_s: float
    end_s: float


LegEvent = AgentStarted | AgentTurn | AgentFinished


class Recorder:
    """The call's audio as the carrier captured it, one μ-law frame per tick per direction."""

    def __init__(self) -> None:
        self.inbound = bytearray()  # what the callee said (Twilio's "inbound" track)
        self.outbound = bytearray()  # what the callee heard: the agent ("outbound" track)

    @property
    def seconds(self) -> float:
        return len(self.outbound) / 8000

    def add(self, said: bytes, heard: bytes) -> None:
        self.inbound += said
        self.outbound += heard

    def pcm(self, track: str = "both") -> bytes:
        """Mono 8 kHz PCM16 (little-endian) of one track, or of both mixed."""
        inbound = np.frombuffer(codec.ulaw_decode(bytes(self.inbound)), dtype="<i2")
        outbound = np.frombuffer(codec.ulaw_decode(bytes(self.outbound)), dtype="<i2")
        if track == "inbound":
            mixed = inbound
        elif track == "outbound":
            mixed = outbound
        else:
            total = inbound.astype(np.int32) + outbound.astype(np.int32)
            mixed = np.clip(total, -32768, 32767).astype("<i2")
        return mixed.tobytes()

    def wav(self, track: str = "both") -> bytes:
        """A mono 8 kHz PCM16 WAV of one track, or of both mixed."""
        return wav_of(self.pcm(track))


def wav_of(pcm16: bytes, sample_rate: int = 8000) -> bytes:
    """A mono PCM16 WAV file holding `pcm16`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm16)
    return buffer.getvalue()


class StreamLeg:
    """One Media Streams websocket, from `connected` to `stop`. `run()` returns when either
    side ends it: `stop()` (the carrier: hang-up or new TwiML) or the bridge closing it."""

    def __init__(
        self,
        *,
        url: str,
        auth_token: str,
        account_sid: str,
        call_sid: str,
        parameters: dict[str, str],
        conversation: Conversation,
        index: FrameIndex,
        recorder: Recorder,
        voiced_rms: int = 300,
        end_of_speech_s: float = 0.4,
        on_violation: Callable[[Violation], None] | None = None,
    ) -> None:
        self.url = url
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.stream_no = conversation.streams
        conversation.streams += 1
        self.events: asyncio.Queue[LegEvent] = asyncio.Queue()
        self.ended_by: str | None = None  # "carrier" | "bridge"
        # Every message both ways is checked against Twilio's documented shapes.
        self.wire = StreamWire()
        self.violations: list[Violation] = []
        self.violation_count = 0
        self._on_violation = on_violation
        self.marks_echoed: list[str] = []
        self.clears = 0
        self._token = auth_token
        self._account_sid = account_sid
        self.call_sid = call_sid
        self._parameters = parameters
        self._conv = conversation
        self._index = index
        self._recorder = recorder
        self._voiced_rms = voiced_rms
        self._end_of_speech_s = end_of_speech_s
        self._speech: collections.deque[tuple[Line, bytes]] = collections.deque()
        self._current: tuple[Line, bytes, int] | None = None
        self._playout: collections.deque[bytes | str] = collections.deque()
        self._echo: list[str] = []
        self._seq = 0
        self._sent = 0
        self._stop = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._talk_start: float | None = None
        self._last_voiced = 0.0
        self._turn_ended = False  # a mark or clear was played since the last voiced frame

    # ---- the callee's side ----------------------------------------------------------------

    def speak(self, line: Line, mulaw: bytes) -> None:
        """Queue a line; it joins the conversation when its first frame goes out."""
        self._speech.append((line, mulaw))
        self._drained.clear()

    @property
    def speaking(self) -> bool:
        return not self._drained.is_set()

    @property
    def hearing_agent(self) -> bool:
        """The agent's voice is playing right now."""
        return self._talk_start is not None

    async def drained(self) -> None:
        """Wait until everything queued with `speak()` has been sent."""
        await self._drained.wait()

    def stop(self) -> None:
        """End the stream from the carrier's side (`stop` message, then close)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ---- the wire -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and stream until one side ends it.

        Raises:
            OSError, websockets.exceptions.WebSocketException: the bridge could not be reached.
        """
        signature = RequestValidator(self._token).compute_signature(self.url, {})
        async with connect(
            self.url, additional_headers={"X-Twilio-Signature": signature}, open_timeout=5
        ) as ws:
            self._conv.streaming = True
            await self._send(ws, codec.connected())
            await self._send(
                ws,
                codec.start(
                    self.stream_sid,
                    self.call_sid,
                    self._account_sid,
                    self._parameters,
                    seq=self._next_seq(),
                ),
            )
            ticker = asyncio.create_task(self._tick_loop(ws), name="sim-stream-tick")
            try:
                await self._receive(ws)
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
        if self.ended_by is None:
            self.ended_by = "bridge"

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _record(self, violations: list[Violation]) -> None:
        for violation in violations:
            self.violation_count += 1
            if len(self.violations) < MAX_VIOLATIONS_KEPT:
                self.violations.append(violation)
                logger.warning(
                    "media stream message off Twilio's documented wire",
                    extra={"call_sid": self.call_sid, "violation": str(violation)},
                )
            if self._on_violation is not None:
                self._on_violation(violation)

    async def _send(self, ws: ClientConnection, raw: str) -> None:
        self._record(self.wire.carrier_sends(raw))
        await ws.send(raw)

    async def _receive(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                violations = self.wire.bridge_sent(raw)
                self._record(violations)
                if any(v.ignored for v in violations):
                    continue  # Twilio logs 31950/31951 and drops the message
                message = codec.parse(raw)
                if isinstance(message, codec.PlayMedia):
                    self._playout.append(message.payload)
                elif isinstance(message, codec.PlayMark):
                    self._playout.append(message.name)
                else:  # clear: drop unplayed audio, every pending mark is echoed now
                    self.clears += 1
                    self._echo += [x for x in self._playout if isinstance(x, str)]
                    self._playout.clear()
                    self._turn_ended = True
        except ConnectionClosed:
            pass

    async def _tick_loop(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        ticks = 0
        try:
            while not self._stop.is_set():
                ticks += 1
                said = self._next_frame()
                self._index.register(self._conv, self.stream_no, self._sent, said)
                message = codec.media(
                    self.stream_sid, self._next_seq(), ticks, (ticks - 1) * 20, said
                )
                await self._send(ws, message)
                self._sent += len(said)
                heard = self._play()
                self._recorder.add(said, heard or _SILENT_FRAME)
                self._listen(heard)
                for name in self._echo:
                    self.marks_echoed.append(name)
                    await self._send(ws, codec.mark(self.stream_sid, self._next_seq(), name))
                self._echo.clear()
                delay = started + ticks * TICK_S - loop.time()
                if delay < -MAX_CATCH_UP_S:  # the machine was suspended: start the clock anew
                    started -= delay
                await asyncio.sleep(max(0.0, delay))
            self.ended_by = "carrier"
            stop = codec.stop(self.stream_sid, self._next_seq(), self._account_sid, self.call_sid)
            await self._send(ws, stop)
            await ws.close()
        except ConnectionClosed:
            pass

    def _next_frame(self) -> bytes:
        """The callee's next 20 ms: queued speech, else the line's background noise."""
        if self._current is None and self._speech:
            line, audio = self._speech.popleft()
            line.stream_no, line.stream_offset = self.stream_no, self._sent
            line.recording_s = self._recorder.seconds
            self._conv.add(line)
            self._current = (line, audio, 0)
        if self._current is None:
            self._drained.set()
            return voice.noise_mulaw(self._conv.rng, FRAME_BYTES)
        line, audio, pos = self._current
        frame = audio[pos : pos + FRAME_BYTES]
        if pos + FRAME_BYTES >= len(audio):
            self._current = None
            if not self._speech:
                self._drained.set()
        else:
            self._current = (line, audio, pos + FRAME_BYTES)
        if len(frame) < FRAME_BYTES:
            frame += voice.noise_mulaw(self._conv.rng, FRAME_BYTES - len(frame))
        return frame

    def _play(self) -> bytes | None:
        """Play the next 20 ms of the bridge's audio; marks reached are queued for echo."""
        out = bytearray()
        while self._playout and len(out) < FRAME_BYTES:
            head = self._playout[0]
            if isinstance(head, str):
                self._echo.append(head)
                self._playout.popleft()
                self._turn_ended = True
                continue
            need = FRAME_BYTES - len(out)
            out += head[:need]
            if len(head) > need:
                self._playout[0] = head[need:]
            else:
                self._playout.popleft()
        if not out:
            return None
        return bytes(out) + _SILENT_FRAME[len(out) :]

    def _listen(self, heard: bytes | None) -> None:
        now = self._recorder.seconds
        voiced = heard is not None and voice.rms(codec.ulaw_decode(heard)) >= self._voiced_rms
        if voiced:
            if self._talk_start is None:
                self._talk_start = now - TICK_S
                self.events.put_nowait(AgentStarted(self._talk_start))
            elif self._turn_ended:
                self.events.put_nowait(AgentTurn(round(now - TICK_S, 3), self._last_voiced))
            self._turn_ended = False
            self._last_voiced = now
        elif self._talk_start is not None and now - self._last_voiced >= self._end_of_speech_s:
            heard_s = round(self._last_voiced - self._talk_start, 3)
            self.events.put_nowait(AgentFinished(heard_s, self._last_voiced))
            self._talk_start = None
