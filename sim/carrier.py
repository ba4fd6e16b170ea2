"""The simulated carrier: it places every call the Twilio REST face accepts and walks it
through Twilio's life cycle, sending the same signed callbacks Twilio would.

The number dialled picks a venue (`sim.venues`), which decides what happens on the line:
busy, no answer after the ring timeout, or an answer. An answered call runs its TwiML:
`<Play digits>` reaches the venue (an IVR routes on it), `<Connect><Stream>` opens a Media
Stream to the bridge (`sim.media_stream`) on which the venue talks (`sim.callee`). The async
AMD result follows the venue's greeting (`machine_end_beep` after a voicemail beep). A REST
update ends the current stream: `Status=completed` hangs up, new `Twiml` runs next (that is
how DTMF is sent). The bridge closing its socket ends the call (no verb follows), and so
does the venue hanging up. After the call: the final status callback with `CallDuration`,
then, if asked, the recording callback whose media is the audio the carrier captured,
served as real MP3 (`sim.mp3`) at `.mp3` and as WAV at `.wav`, like Twilio. Every Media
Streams message of every call is checked against Twilio's documented shapes
(`sim.stream_wire`); `violations` keeps what was off, so a test can fail on it.

If the stream cannot be opened (no bridge listening), the call stays up silently for
`talk_seconds` and completes, which is the minimal life `make run` had before the bridge.
`speed` compresses every wait (SIM_SPEED); audio always runs in real time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import logging
import xml.etree.ElementTree as ET

import httpx
from websockets.exceptions import WebSocketException

from sim import truth
from sim.callee import Callee
from sim.media_stream import Recorder, StreamLeg, wav_of
from sim.mp3 import encode_mp3
from sim.scenario_files import Scenarios, shipped
from sim.stream_wire import Violation
from sim.twilio_rest import FakeCall, FakeTwilioRest, RecordedForm
from sim.venues import Answering
from sim.voice import WordTiming
from sim.world import Conversation, World

log = logging.getLogger(__name__)

RING_S = 1.0  # an answering venue picks up after this long
MAX_CALL_S = 900.0
_AMD = {Answering.VOICEMAIL: "machine_end_beep", Answering.IVR: "unknown"}


@dataclasses.dataclass(frozen=True, slots=True)
class Verb:
    """One TwiML verb the carrier understands: play digits, connect a stream, or hang up."""

    name: str
    digits: str = ""
    url: str = ""
    parameters: tuple[tuple[str, str], ...] = ()


def parse_twiml(twiml: str) -> list[Verb]:
    """The verbs of a `<Response>` in order; verbs the carrier ignores are skipped."""
    verbs: list[Verb] = []
    for element in ET.fromstring(twiml):
        if element.tag == "Play" and element.get("digits"):
            verbs.append(Verb("play_digits", digits=element.get("digits", "")))
        elif element.tag == "Connect":
            stream = element.find("Stream")
            if stream is not None and stream.get("url"):
                parameters = tuple(
                    (p.get("name", ""), p.get("value", "")) for p in stream.iter("Parameter")
                )
                verbs.append(Verb("stream", url=stream.get("url", ""), parameters=parameters))
        elif element.tag == "Hangup":
            verbs.append(Verb("hangup"))
    return verbs


@dataclasses.dataclass(eq=False)
class _Call:
    call: FakeCall
    conv: Conversation
    callee: Callee
    hung_up: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    next_twiml: str | None = None
    leg: StreamLeg | None = None
    recorder: Recorder = dataclasses.field(default_factory=Recorder)

    @property
    def sid(self) -> str:
        assert self.call.sid is not None
        return self.call.sid


class SimCarrier:
    """Owns one task per live call; `aclose()` cancels and awaits them all."""

    def __init__(
        self,
        rest: FakeTwilioRest,
        *,
        speed: float = 1.0,
        talk_seconds: float = 5.0,
        world: World | None = None,
        media_streams: bool = True,
        scenarios: Scenarios | None = None,
    ) -> None:
        self.world = world or World(speed=speed)
        self._scenarios = scenarios or shipped()
        # Off (SIM_MEDIA_STREAMS=false) the line is held silently: benchmarks of the call
        # API measure dialing, not hundreds of live conversations.
        self._media_streams = media_streams
        self._rest = rest
        self._talk = talk_seconds
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._calls: dict[str, _Call] = {}
        # The streams opened, newest last, for observation (bounded: the sim runs for days).
        self.legs: collections.deque[StreamLeg] = collections.deque(maxlen=100)
        # Media Streams messages off Twilio's documented wire, of every call (bounded too).
        self.violations: collections.deque[Violation] = collections.deque(maxlen=1000)
        rest.on_create = self._created
        rest.on_update = self._updated

    def _created(self, call: FakeCall) -> None:
        assert call.sid is not None
        to = call.form.get("To") or ""
        conv = self.world.open(call.sid, to, self._scenarios.venue_for(to))
        today = datetime.date.today()
        state = _Call(call, conv, Callee(self.world, conv, today=today))
        self._calls[call.sid] = state
        self._tasks[call.sid] = asyncio.create_task(self._life(state), name=f"sim-call-{call.sid}")

    def _updated(self, call: FakeCall, form: RecordedForm) -> None:
        state = self._calls.get(call.sid or "")
        if state is None:
            return
        if form.get("Status") in ("completed", "canceled"):
            state.hung_up.set()
        elif (twiml := form.get("Twiml")) is not None:
            state.next_twiml = twiml
        else:
            return
        if state.leg is not None:
            state.leg.stop()

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(self.world.wait_s(seconds))

    async def _fire(self, state: _Call, status: str, duration: int | None = None) -> None:
        try:
            if duration is None:
                await self._rest.fire_status(state.sid, status)
            else:
                await self._rest.fire_status(state.sid, status, CallDuration=str(duration))
        except (httpx.HTTPError, ValueError) as err:
            log.warning(
                "status callback not delivered", extra={"status": status, "error": str(err)}
            )

    async def _life(self, state: _Call) -> None:
        answering = state.conv.venue.answering
        try:
            await self._pause(0.05)
            await self._fire(state, "initiated")
            if answering is Answering.BUSY:
                await self._pause(0.5)
                await self._fire(state, "busy")
                return
            await self._pause(0.3)
            await self._fire(state, "ringing")
            ring = RING_S
            if answering is Answering.NO_ANSWER:
                ring = float(state.call.form.get("Timeout") or 60)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.world.wait_s(ring)):
                    await state.hung_up.wait()
            if state.hung_up.is_set():
                await self._fire(state, "canceled")
                return
            if answering is Answering.NO_ANSWER:
                await self._fire(state, "no-answer")
                return
            await self._fire(state, "in-progress")
            loop = asyncio.get_running_loop()
            answered = loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.world.wait_s(MAX_CALL_S)):
                    await self._connected(state)
            duration = max(1, round((loop.time() - answered) * self.world.speed))
            await self._fire(state, "completed", duration)
            await self._send_recording(state)
        finally:
            self.world.close(state.conv)
            self._tasks.pop(state.sid, None)
            self._calls.pop(state.sid, None)

    async def _connected(self, state: _Call) -> None:
        """Run the call's TwiML (and any that replaces it) until the call ends."""
        amd = asyncio.create_task(self._amd(state), name="sim-amd")
        try:
            twiml = state.call.form.get("Twiml") or await self._fetch_twiml(state)
            while twiml is not None and not state.hung_up.is_set():
                state.next_twiml = None
                await self._run_twiml(state, twiml)
                twiml = state.next_twiml
        finally:
            amd.cancel()
            await asyncio.gather(amd, return_exceptions=True)

    async def _run_twiml(self, state: _Call, twiml: str) -> None:
        for verb in parse_twiml(twiml):
            if state.hung_up.is_set() or state.next_twiml is not None:
                return
            if verb.name == "play_digits":
                state.conv.digits_pressed = state.conv.digits_pressed + verb.digits
                state.callee.mind.on_digits(verb.digits)
                await self._pause(0.1 * len(verb.digits))
            elif verb.name == "stream":
                await self._stream(state, verb)
                return  # the bridge closed, the venue hung up, or the carrier ended it
            else:
                return

    async def _stream(self, state: _Call, verb: Verb) -> None:
        if not self._media_streams:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.world.wait_s(self._talk)):
                    await state.hung_up.wait()
            return
        leg = StreamLeg(
            url=verb.url,
            auth_token=self._rest.auth_token,
            account_sid=self._rest.account_sid,
            call_sid=state.sid,
            parameters=dict(verb.parameters),
            conversation=state.conv,
            index=self.world.index,
            recorder=state.recorder,
            on_violation=self.violations.append,
        )
        state.conv.call_id = dict(verb.parameters).get("call_id", state.conv.call_id)
        state.leg = leg
        self.legs.append(leg)
        callee = asyncio.create_task(state.callee.converse(leg), name="sim-callee")
        try:
            await leg.run()
        except (OSError, TimeoutError, WebSocketException) as err:
            log.warning("media stream not opened", extra={"error": type(err).__name__})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.world.wait_s(self._talk)):
                    await state.hung_up.wait()
        finally:
            callee.cancel()
            await asyncio.gather(callee, return_exceptions=True)
            state.leg = None
            state.conv.streaming = False

    async def _fetch_twiml(self, state: _Call) -> str | None:
        url = state.call.form.get("Url")
        if url is None:
            return None
        params = {
            "CallSid": state.sid,
            "AccountSid": self._rest.account_sid,
            "CallStatus": "in-progress",
        }
        try:
            response = await self._rest.post_signed(url, params)
        except httpx.HTTPError:
            return None
        return response.text if response.is_success else None

    async def _amd(self, state: _Call) -> None:
        if state.call.form.get("AsyncAmd") != "true":
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.world.wait_s(10.0) + 10.0):
                await state.callee.opening_done.wait()
        answered_by = _AMD.get(state.conv.venue.answering, "human")
        duration_ms = round((state.callee.opening_s + 0.5) * 1000)
        try:
            await self._rest.fire_amd(state.sid, answered_by, duration_ms)
        except (httpx.HTTPError, ValueError) as err:
            log.warning("amd callback not delivered", extra={"error": str(err)})

    async def _send_recording(self, state: _Call) -> None:
        form = state.call.form
        if form.get("Record") != "true" or not state.recorder.outbound:
            return
        track = form.get("RecordingTrack") or "both"
        pcm = state.recorder.pcm(track)
        wav = wav_of(pcm)
        mp3 = await asyncio.to_thread(encode_mp3, pcm)  # LAME takes a while on a long call
        # Deepgram's stand-in knows a recording's words by the bytes it is sent: the MP3.
        words = recording_words(state.conv, track)
        self.world.add_recording(mp3, words, duration_s=len(pcm) / 16000)  # 8 kHz PCM16
        await self._pause(0.2)
        try:
            seconds = max(1, round(state.recorder.seconds))
            await self._rest.fire_recording(state.sid, media=mp3, wav=wav, duration_sec=seconds)
        except (httpx.HTTPError, ValueError) as err:
            log.warning("recording callback not delivered", extra={"error": str(err)})

    @property
    def calls_in_progress(self) -> int:
        """Calls whose life (callbacks included, the recording's last) has not ended."""
        return len(self._tasks)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def recording_words(conv: Conversation, track: str) -> list[WordTiming]:
    """The words audible in a recording of `track`, on the recording's clock."""
    speakers = {"inbound": ("venue",), "outbound": ("agent",)}.get(track, ("venue", "agent"))
    words: list[WordTiming] = []
    for line in conv.lines:
        if line.speaker not in speakers or line.recording_s is None:
            continue
        for token, start, end in truth.audible_words(line):
            words.append(
                (token, round(line.recording_s + start, 3), round(line.recording_s + end, 3))
            )
    return sorted(words, key=lambda w: w[1])
