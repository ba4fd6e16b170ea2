"""The simulated carrier at the wire: a tiny in-test `/twilio/stream` server checks what the
carrier sends (signature, message shapes through `media.codec.twilio_codec.parse`, pacing by frame
count, marks and clear), and signed callbacks land at `media.twilio.webhooks` through the
production twilio SDK adapter that dials, hangs up and sends DTMF."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from media.codec import twilio_codec as codec
from media.codec.audio import pcm16_to_ulaw, ulaw_to_pcm16
from media.twilio.webhooks import (
    TelephonyEvent,
    signature_valid_for_websocket,
    twilio_webhook_routes,
)
from sim import voice
from sim.carrier import SimCarrier
from sim.loopback import LoopbackServer
from sim.twilio_rest import FakeTwilioRest
from sim.world import World
from telephony import stream_tokens
from telephony.twilio_rest import TwilioTelephony
from tests import mp3_frames
from tests.conftest import assert_twilio_wire_clean

ACCOUNT = "AC" + "ca77" * 8
TOKEN = "sim-carrier-twilio-token"

pytestmark = pytest.mark.timeout(60)


class Sink:
    def __init__(self) -> None:
        self.events: list[TelephonyEvent] = []
        self.changed = asyncio.Event()

    async def deliver(self, event: TelephonyEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def of(self, sid: str, kind: str) -> list[TelephonyEvent]:
        return [e for e in self.events if e.call_sid == sid and e.kind == kind]

    def statuses(self, sid: str) -> list[str | None]:
        return [e.status for e in self.of(sid, "status")]

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(30):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@dataclasses.dataclass(eq=False)
class Peer:
    """One accepted stream connection, as the bridge would see it."""

    ws: WebSocket
    signature_ok: bool
    start: codec.Start
    media: list[codec.Media] = dataclasses.field(default_factory=list)
    seqs: list[str] = dataclasses.field(default_factory=list)
    marks: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (name, frames seen)
    stopped: bool = False

    async def read(self, frames: int | None = None, until_mark: str | None = None) -> None:
        """Read messages until `frames` more media frames (or `until_mark`, or stop/close)."""
        target = len(self.media) + frames if frames is not None else None
        while not self.stopped:
            if target is not None and len(self.media) >= target:
                return
            if until_mark is not None and until_mark in [m for m, _ in self.marks]:
                return
            try:
                raw = await self.ws.receive_text()
            except WebSocketDisconnect:
                self.stopped = True
                return
            self.seqs.append(str(json.loads(raw).get("sequenceNumber", "")))
            event = codec.parse(raw)
            if isinstance(event, codec.Media):
                self.media.append(event)
            elif isinstance(event, codec.Mark):
                self.marks.append((event.name, len(self.media)))
            elif isinstance(event, codec.Stop):
                self.stopped = True

    async def play(self, mulaw: bytes) -> None:
        for i in range(0, len(mulaw), 160):
            await self.ws.send_text(codec.media(self.start.stream_sid, mulaw[i : i + 160]))


Behaviour = Callable[[Peer], Awaitable[None]]


@dataclasses.dataclass
class Line:
    carrier: SimCarrier
    rest: FakeTwilioRest
    telephony: TwilioTelephony
    sink: Sink
    peers: list[Peer]
    behave: list[Behaviour]  # the next connection runs behave.pop(0)


@pytest.fixture
async def line() -> AsyncIterator[Line]:
    sink = Sink()
    peers: list[Peer] = []
    behave: list[Behaviour] = []
    async with FakeTwilioRest(ACCOUNT, TOKEN) as rest:
        carrier = SimCarrier(rest, world=World(speed=20.0), talk_seconds=2.0)
        app = Starlette()
        server = LoopbackServer(app, websockets=True)
        stream_url = f"ws://127.0.0.1:{server.port}/twilio/stream"

        async def stream(ws: WebSocket) -> None:
            ok = signature_valid_for_websocket(
                TOKEN, stream_url, ws.headers.get("x-twilio-signature")
            )
            await ws.accept()
            first = codec.parse(await ws.receive_text())
            assert isinstance(first, codec.Connected)
            start = codec.parse(await ws.receive_text())
            assert isinstance(start, codec.Start)
            peer = Peer(ws, ok, start)
            peers.append(peer)
            await (behave.pop(0) if behave else Peer.read)(peer)

        app.router.routes.append(WebSocketRoute("/twilio/stream", stream))
        for route in twilio_webhook_routes(TOKEN, server.base_url, sink):
            app.router.routes.append(route)
        telephony = TwilioTelephony(ACCOUNT, TOKEN, "+15005550006", server.base_url, rest.base_url)
        try:
            async with server:
                yield Line(carrier, rest, telephony, sink, peers, behave)
                await carrier.aclose()
                assert_twilio_wire_clean(carrier)
        finally:
            await carrier.aclose()
            await telephony.aclose()


def agent_audio(seconds: float) -> bytes:
    """Exactly `seconds` of speech-shaped μ-law, as the bridge would play it."""
    speech = voice.speak(
        "word " * int(seconds * 5), voice.Voice(180.0, word_ms=200), 8000, np.random.default_rng(1)
    )
    size = round(seconds * 16000)
    return pcm16_to_ulaw(speech.pcm[:size].ljust(size, b"\0"))


def voiced_frames(mulaw: bytes) -> int:
    return sum(
        voice.rms(ulaw_to_pcm16(mulaw[i : i + 160])) >= 300 for i in range(0, len(mulaw), 160)
    )


async def test_stream_wire_marks_clear_hang_up_and_recording(line: Line) -> None:
    async def behave(peer: Peer) -> None:
        await peer.read(frames=250)  # the venue has said hello
        await peer.play(agent_audio(0.5))
        await peer.ws.send_text(codec.mark(peer.start.stream_sid, "played"))
        await peer.read(until_mark="played")
        await peer.play(agent_audio(3.0))
        await peer.ws.send_text(codec.mark(peer.start.stream_sid, "cut"))
        await peer.ws.send_text(codec.clear(peer.start.stream_sid))
        await peer.read(until_mark="cut")
        await line.telephony.hang_up(peer.start.call_sid)
        await peer.read()

    line.behave.append(behave)
    sid = await line.telephony.dial("call-1", "+15550100")
    await line.sink.wait(lambda: bool(line.sink.of(sid, "recording")))
    (peer,) = line.peers
    assert peer.signature_ok
    assert peer.start.call_sid == sid and peer.start.account_sid == ACCOUNT
    # Every TwiML <Parameter> comes back unchanged: the call id and core's stream token.
    params = peer.start.custom_parameters
    assert set(params) == {"call_id", "stream_token"} and params["call_id"] == "call-1"
    stream_tokens.check(
        stream_tokens.stream_key(TOKEN), params["stream_token"], "call-1", sid, now=time.time()
    )
    assert peer.start.tracks == ("inbound",)
    assert peer.start.media_format == codec.MediaFormat("audio/x-mulaw", 8000, 1)
    assert [m.chunk for m in peer.media] == list(range(1, len(peer.media) + 1))
    assert [m.timestamp_ms for m in peer.media[:3]] == [0, 20, 40]
    assert all(len(m.payload) == 160 for m in peer.media)
    assert peer.seqs[-1] == str(len(peer.seqs) + 1)  # start was 1; strings, consecutive
    assert peer.stopped
    said = b"".join(m.payload for m in peer.media)
    assert voiced_frames(said) > 25  # the venue said hello
    (played_at, cut_at) = [frames for _, frames in peer.marks]
    assert played_at - 250 >= 25  # 0.5 s of audio takes 25 frames of the carrier's clock
    assert cut_at - played_at <= 3  # clear: the pending mark comes back at once
    assert line.sink.statuses(sid) == ["dialing", "ringing", "in_progress", "completed"]
    assert [e.answered_by for e in line.sink.of(sid, "amd")] == ["human"]
    recording = line.sink.of(sid, "recording")[0]
    assert recording.recording_sid is not None
    leg = line.carrier.legs[0]
    assert leg.violations == [] and leg.clears == 1 and leg.ended_by == "carrier"
    # Each message both ways was checked against Twilio's shapes: connected + start + the
    # rest the peer read; 25 + 150 frames, two marks and a clear.
    assert leg.wire.checked == {"carrier": 2 + len(peer.seqs), "bridge": 25 + 150 + 3}
    assert leg.marks_echoed == ["played", "cut"]
    # The recording is real MP3, served as audio/mpeg with its length, and as long as the
    # call's audio; its WAV (same audio, at Twilio's `.wav`) is checked sample by sample.
    async with line.telephony.open_recording(recording.recording_sid) as got:
        assert got.content_type == "audio/mpeg"
        mp3 = b"".join([chunk async for chunk in got.chunks])
    assert got.content_length == len(mp3) and mp3[:2] == b"\xff\xfb"
    assert recording.recording_url is not None
    async with httpx.AsyncClient(auth=(ACCOUNT, TOKEN), trust_env=False) as client:
        served = await client.get(f"{recording.recording_url}.wav")
    assert served.headers["content-type"] == "audio/x-wav"
    # The recording (outbound track: what the callee heard) holds the played audio only.
    with wave.open(io.BytesIO(served.content)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        heard = pcm16_to_ulaw(wav.readframes(wav.getnframes()))
        seconds = wav.getnframes() / 8000
    assert 0 <= mp3_frames.duration_s(mp3) - seconds < 0.1  # LAME adds < 2 frames of padding
    played = voiced_frames(agent_audio(0.5))
    assert played <= voiced_frames(heard) < played + voiced_frames(agent_audio(3.0)) // 2


async def test_busy_and_no_answer_never_open_a_stream(line: Line) -> None:
    busy = await line.telephony.dial("call-busy", "+15550103")
    silent = await line.telephony.dial("call-silent", "+15550104")
    await line.sink.wait(lambda: "no_answer" in line.sink.statuses(silent))
    await line.sink.wait(lambda: "busy" in line.sink.statuses(busy))
    assert line.sink.statuses(busy) == ["dialing", "busy"]
    assert line.sink.statuses(silent) == ["dialing", "ringing", "no_answer"]
    assert line.peers == [] and line.sink.of(busy, "recording") == []


async def test_voicemail_beeps_then_amd_says_machine(line: Line) -> None:
    sid = await line.telephony.dial("call-vm", "+15550105")
    await line.sink.wait(lambda: "completed" in line.sink.statuses(sid))
    (amd,) = line.sink.of(sid, "amd")
    assert amd.answered_by == "machine_end_beep"
    assert int(amd.raw["MachineDetectionDuration"]) > 3000
    conv = line.carrier.world.get(sid)
    assert conv is not None and [x.act for x in conv.lines] == ["voicemail_greeting"]
    (peer,) = line.peers
    assert peer.stopped and line.carrier.legs[0].ended_by == "carrier"  # the machine hung up


async def test_venue_hangs_up_mid_call(line: Line) -> None:
    async def behave(peer: Peer) -> None:
        await peer.read(frames=150)
        conv = line.carrier.world.get(peer.start.call_sid)
        assert conv is not None
        data = {"date": "2030-01-02", "time": "19:00", "guests": "2", "name": "Anna"}
        conv.add(conv.new_line("agent", "request", "A table please", "en", data, (), 1.0))
        await peer.play(agent_audio(1.0))
        await peer.read()

    line.behave.append(behave)
    sid = await line.telephony.dial("call-gone", "+15550107")
    await line.sink.wait(lambda: "completed" in line.sink.statuses(sid))
    conv = line.carrier.world.get(sid)
    assert conv is not None
    assert [x.act for x in conv.lines] == ["greeting", "request", "hang_up_notice"]
    assert line.peers[0].stopped and line.carrier.legs[0].ended_by == "carrier"
    assert line.rest.updates == []  # nobody asked the carrier to hang up


async def test_dtmf_update_replaces_the_stream(line: Line) -> None:
    async def menu(peer: Peer) -> None:
        await peer.read(frames=100)
        await line.telephony.send_dtmf(peer.start.call_sid, "call-ivr", "1")
        await peer.read()

    async def person(peer: Peer) -> None:
        await peer.read(frames=150)
        await line.telephony.hang_up(peer.start.call_sid)
        await peer.read()

    line.behave += [menu, person]
    sid = await line.telephony.dial("call-ivr", "+15550106")
    await line.sink.wait(lambda: "completed" in line.sink.statuses(sid))
    first, second = line.peers
    assert first.stopped and second.stopped
    assert first.start.stream_sid != second.start.stream_sid
    params = second.start.custom_parameters
    assert set(params) == {"call_id", "stream_token"} and params["call_id"] == "call-ivr"
    # The re-connect's token is bound to the call's SID, as the carrier passed it through.
    stream_tokens.check(
        stream_tokens.stream_key(TOKEN), params["stream_token"], "call-ivr", sid, now=time.time()
    )
    with pytest.raises(stream_tokens.StreamTokenRefused):
        stream_tokens.check(
            stream_tokens.stream_key(TOKEN),
            params["stream_token"],
            "call-ivr",
            "CA" + "0" * 32,
            now=time.time(),
        )
    assert line.rest.call(sid).digits == ["1"]
    conv = line.carrier.world.get(sid)
    assert conv is not None
    assert [(x.act, x.stream_no) for x in conv.lines] == [("ivr_menu", 0), ("greeting", 1)]


async def test_messages_off_the_documented_wire_are_recorded_and_ignored_like_twilio(
    line: Line,
) -> None:
    async def behave(peer: Peer) -> None:
        await peer.read(frames=25)
        sid = peer.start.stream_sid
        await peer.ws.send_text('{"event":"clear"}')  # no streamSid: 31951, not cleared
        await peer.ws.send_text(json.dumps({"event": "clear", "streamSid": "MZ" + "f" * 32}))
        await peer.ws.send_text(json.dumps({"event": "mark", "streamSid": sid, "mark": {}}))
        await peer.ws.send_bytes(agent_audio(0.1))  # raw audio, not a media message: 31950
        fat = {"event": "media", "streamSid": sid, "media": {"payload": "", "track": "outbound"}}
        await peer.ws.send_text(json.dumps(fat))
        await peer.ws.send_text(codec.media(sid, agent_audio(0.1)[:100]))  # played: any size
        await peer.ws.send_text(codec.mark(sid, "after"))
        await peer.read(until_mark="after")
        await line.telephony.hang_up(peer.start.call_sid)
        await peer.read()

    line.behave.append(behave)
    sid = await line.telephony.dial("call-off-wire", "+15550100")
    await line.sink.wait(lambda: "completed" in line.sink.statuses(sid))
    leg = line.carrier.legs[0]
    assert leg.clears == 0 and leg.marks_echoed == ["after"]  # the refused ones did nothing
    assert [(v.sender, v.code, v.reason) for v in leg.violations] == [
        ("bridge", 31951, "'streamSid' is a required property"),
        ("bridge", 31951, "streamSid is not the active stream's"),
        ("bridge", 31951, "mark: 'name' is a required property"),
        ("bridge", 31950, "binary frame (Media Streams messages are JSON text)"),
        ("bridge", 31951, "media: unknown field 'track'"),
        ("bridge", None, "media.payload is 100 bytes, not whole 20 ms frames (160)"),
    ]
    assert list(line.carrier.violations) == leg.violations
    line.carrier.violations.clear()  # caused on purpose: the fixture's check is for the rest


async def test_bridge_closing_the_socket_ends_the_call(line: Line) -> None:
    async def close(peer: Peer) -> None:
        await peer.read(frames=10)
        await peer.ws.close()

    line.behave.append(close)
    sid = await line.telephony.dial("call-closed", "+15550100")
    await line.sink.wait(lambda: "completed" in line.sink.statuses(sid))
    assert line.carrier.legs[0].ended_by == "bridge"


async def test_without_a_stream_endpoint_the_call_stays_up_silently() -> None:
    sink = Sink()
    async with FakeTwilioRest(ACCOUNT, TOKEN) as rest:
        carrier = SimCarrier(rest, world=World(speed=20.0), talk_seconds=2.0)
        app = Starlette(routes=twilio_webhook_routes(TOKEN, "http://127.0.0.1:1", sink))
        async with LoopbackServer(app) as server:
            # Callbacks are signed for the URL they are sent to, so point them at the server.
            base = server.base_url
            app.router.routes[:] = twilio_webhook_routes(TOKEN, base, sink)
            telephony = TwilioTelephony(ACCOUNT, TOKEN, "+15005550006", base, rest.base_url)
            try:
                sid = await telephony.dial("call-nobody", "+15550100")
                await sink.wait(lambda: "completed" in sink.statuses(sid))
            finally:
                await carrier.aclose()
                await telephony.aclose()
    assert sink.statuses(sid) == ["dialing", "ringing", "in_progress", "completed"]
    assert carrier.legs[0].ended_by is None  # never connected
    assert_twilio_wire_clean(carrier)
