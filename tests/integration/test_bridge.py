"""Whole calls through the media process: a Twilio Media Streams client, the TLS Gemini Live
fake and the Deepgram fake on loopback, driven through the production adapters (google-genai,
deepgram-sdk, Starlette under uvicorn), with core behind an in-memory `CoreLink` and the
carrier's REST side behind the in-memory telephony port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import pathlib
import signal
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import uvicorn
from callagent.v1 import media_pb2, media_pb2_grpc
from google.protobuf import struct_pb2
from twilio.request_validator import RequestValidator
from websockets.exceptions import InvalidStatus

from core import main as core_main
from media import drain
from media.call import core_link
from media.call.bridge import CallBridge
from media.call.core_link import CallTask
from media.codec import audio
from media.providers import live_wire
from media.providers.agent_prompt import ANSWER_PREFIX, GUIDANCE_PREFIX
from media.server import create_app
from media.settings import MediaSettings
from media.twilio.webhooks import TelephonyEvent
from sim.deepgram_server import FakeDeepgram, ScriptedUtterance
from telephony.settings import TwilioSettings
from tests.conftest import INTERNAL_TOKEN, eventually, free_port, serve_asgi
from tests.fakes.core_link import InMemoryCore, InMemoryCoreLink
from tests.fakes.gemini_live import FakeGeminiLive, either_case
from tests.fakes.telephony import FakeTelephony
from tests.fakes.twilio_stream import TwilioStreamClient

TOKEN = "bridge-test-twilio-auth-token"
GEMINI_KEY = "bridge-test-gemini-key"
LOUD = 12_000  # amplitude of "old" model audio
SOFT = 1_500  # amplitude of "new" model audio
BRIEF = "Book a table for 4 tomorrow at 19:00 under Anna."


def tone_24k(ms: int, amplitude: int, hz: float = 440.0) -> bytes:
    t = np.arange(24 * ms) / 24_000
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def level(mulaw: bytes) -> float:
    pcm = np.frombuffer(audio.ulaw_to_pcm16(mulaw), dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(pcm**2)))


class RecordingPhone(FakeTelephony):
    """The telephony fake, noting what the callee had heard when the hang-up came."""

    def __init__(self) -> None:
        super().__init__()
        self.client: TwilioStreamClient | None = None
        self.echoed_at_hangup: list[str] = []
        self.heard_at_hangup = 0

    async def hang_up(self, call_sid: str) -> None:
        if self.client is not None:
            self.echoed_at_hangup = list(self.client.echoed)
            self.heard_at_hangup = len(self.client.heard)
        await super().hang_up(call_sid)


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[TelephonyEvent] = []

    async def deliver(self, event: TelephonyEvent) -> None:
        self.events.append(event)


@dataclasses.dataclass
class World:
    base_url: str
    stream_url: str
    core: InMemoryCore
    phone: RecordingPhone
    sink: RecordingSink
    gemini: FakeGeminiLive
    deepgram: FakeDeepgram
    app: Any
    clients: list[TwilioStreamClient] = dataclasses.field(default_factory=list)

    def client(self, call_id: str = "call-1", **kwargs: Any) -> TwilioStreamClient:
        client = TwilioStreamClient(self.stream_url, TOKEN, call_id, **kwargs)
        self.phone.client = client
        self.clients.append(client)
        return client

    def bridge(self, call_id: str = "call-1") -> CallBridge:
        bridge: CallBridge = self.app.state.registry.bridges[call_id]
        return bridge


@pytest.fixture
async def gemini() -> AsyncIterator[FakeGeminiLive]:
    async with FakeGeminiLive(api_key=GEMINI_KEY) as fake:
        yield fake


@pytest.fixture
async def deepgram() -> AsyncIterator[FakeDeepgram]:
    async with FakeDeepgram() as fake:
        yield fake


@pytest.fixture
def ca_file(gemini: FakeGeminiLive, tmp_path: pathlib.Path) -> str:
    path = tmp_path / "gemini-ca.pem"
    ders = gemini.ssl_client_context().get_ca_certs(binary_form=True)
    path.write_text("".join(ssl.DER_cert_to_PEM_cert(der) for der in ders))
    return str(path)


@contextlib.asynccontextmanager
async def media_world(
    gemini: FakeGeminiLive,
    deepgram: FakeDeepgram,
    ca_file: str,
    *,
    serve: Callable[[Any, int], contextlib.AbstractAsyncContextManager[str]] = serve_asgi,
    **overrides: Any,
) -> AsyncIterator[World]:
    port = free_port()
    twilio = TwilioSettings(twilio_auth_token=TOKEN, public_base_url=f"http://127.0.0.1:{port}")
    values: dict[str, Any] = {
        "internal_token": INTERNAL_TOKEN,
        "pod_name": "pod-a",
        "gemini_api_key": GEMINI_KEY,
        "gemini_base_url": gemini.base_url,
        "gemini_ca_file": ca_file,
        "deepgram_api_key": deepgram.api_key,
        "deepgram_http_base": deepgram.http_base,
        "deepgram_ws_base": deepgram.ws_base,
    }
    media = MediaSettings(**(values | overrides))
    core = InMemoryCore(
        lambda call_id: CallTask(call_id, BRIEF, "en", "restaurant_booking", {"guests": 4})
    )
    phone, sink = RecordingPhone(), RecordingSink()
    app = create_app(media, twilio, core_links=core, phone=phone, sink=sink)
    async with serve(app, port) as base_url:
        stream = f"ws://127.0.0.1:{port}/twilio/stream"
        world = World(base_url, stream, core, phone, sink, gemini, deepgram, app)
        yield world
    # Every Media Streams message both ways had Twilio's documented shape (sim.stream_wire).
    found = [str(v) for client in world.clients for v in client.violations]
    assert not found, "Media Streams messages off Twilio's documented wire:\n" + "\n".join(found)


@pytest.fixture
async def world(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> AsyncIterator[World]:
    async with media_world(gemini, deepgram, ca_file) as w:
        yield w


async def started(world: World, call_id: str = "call-1") -> InMemoryCoreLink:
    """Wait until the bridge is attached to core and the greeting cue reached the model."""
    link = await world.core.link(call_id)
    turn = await asyncio.wait_for(world.gemini.next_user_turn(), 10)
    assert turn.kind == "text" and "answered the phone" in turn.text
    return link


def client_content(world: World) -> list[dict[str, Any]]:
    return [
        entry
        for conn in world.gemini.connections
        for direction, kind, entry in conn.log
        if direction == "client" and kind == "clientContent"
    ]


def utterance_marks(names: Iterable[str]) -> list[str]:
    """The marks after utterances (the bridge also marks where each turn starts)."""
    return [name for name in names if name.startswith("utt-")]


async def test_greeting_audio_reaches_twilio_after_start(world: World) -> None:
    world.deepgram.script_utterance("Luigi's, how can I help?", at_audio_s=0.2)
    async with world.client(call_sid="CA" + "1" * 32) as client:
        link = await started(world)
        assert link.attaches == [("call-1", "CA" + "1" * 32, client.stream_sid, "pod-a")]
        conn = await world.gemini.current()
        assert BRIEF in conn.system_instruction
        assert conn.system_instruction.startswith("Your very first sentence")

        result = await world.gemini.say(tone_24k(400, LOUD), "Hello, this is an AI assistant.")
        assert not result.interrupted
        await client.wait_until(lambda: len(utterance_marks(client.echoed)) == 1)
        frames = client.media()
        assert len(frames) == 20  # 400 ms in whole 20 ms frames
        assert all(len(f.payload) == 160 for f in frames)
        assert min(level(f.payload) for f in frames[1:-1]) > 6_000
        assert client.kinds()[-1] == "mark"  # the mark follows the utterance's last frame
        await world.core.wait_until(lambda: len(link.transcripts) >= 2)
        lines = {(t.speaker, t.source): t.text for t in link.transcripts}
        assert lines[("agent", "gemini")] == "Hello, this is an AI assistant."
        assert lines[("callee", "supervisor_stt")] == "Luigi's, how can I help?"
        assert world.gemini.audio_bytes_received > 0  # caller audio flows to the model


async def test_an_agent_line_is_timed_when_the_callee_starts_hearing_it(world: World) -> None:
    async with world.client() as client:
        link = await started(world)
        # Both turns arrive at once, far faster than they play: the second is heard only
        # once the first second of audio has played out.
        await world.gemini.say(tone_24k(1000, LOUD), "First, a whole second.", pace=0)
        await world.gemini.say(tone_24k(200, SOFT), "Then this.", pace=0)
        await client.wait_until(lambda: len(utterance_marks(client.echoed)) == 2)

        def agent_lines() -> list[core_link.Transcript]:
            return [t for t in link.transcripts if t.speaker == "agent"]

        await world.core.wait_until(lambda: len(agent_lines()) == 2)
    first, second = agent_lines()
    assert second.text == "Then this."
    # Play time never runs backwards, so the gap is at least the first turn's length; it is
    # more only if the bridge sent a frame late enough for the phone's buffer to run dry.
    assert 999 <= second.offset_ms - first.offset_ms <= 1200


async def test_an_agent_line_is_timed_on_the_carriers_clock(world: World) -> None:
    """Twilio plays our audio 300 ms after it arrives (a jitter buffer; or our clock and the
    carrier's have drifted): the line starts where the carrier played it, as the recording
    has it, not when we sent it."""
    async with world.client(play_delay_frames=15) as client:
        link = await started(world)
        await world.gemini.say(tone_24k(400, LOUD), "Good evening.", pace=0)
        await world.core.wait_until(lambda: any(t.speaker == "agent" for t in link.transcripts))
        await client.wait_until(lambda: bool(client.heard_at_frame))
    (line,) = [t for t in link.transcripts if t.speaker == "agent"]
    first_sent = next(r for r in client.outbound if r.kind == "media")
    played = client.heard_at_frame[0] * 20  # ms of caller audio the carrier had sent by then
    assert abs(line.offset_ms - played) <= 40, (line.offset_ms, played)
    assert line.offset_ms - first_sent.frame * 20 >= 260  # not the send time


async def test_barge_in_sends_clear_and_no_stale_frame_after_it(world: World) -> None:
    async with world.client() as client:
        await started(world)
        bridge = world.bridge()
        # Model audio arrives twice as fast as it plays, so frames wait in the bridge's queue.
        speaking = asyncio.create_task(world.gemini.say(tone_24k(4000, LOUD), pace=0.5))
        await client.wait_until(lambda: len(client.media()) >= 10)
        await world.gemini.interrupt()  # the callee barged in
        result = await asyncio.wait_for(speaking, 10)
        assert result.interrupted
        await client.wait_until(lambda: "clear" in client.kinds())
        await world.gemini.say(tone_24k(300, SOFT))
        await client.wait_until(lambda: len(utterance_marks(client.echoed)) == 1)

    kinds = client.kinds()
    cut = kinds.index("clear")
    before = [r.payload for r in client.outbound[:cut] if r.kind == "media"]
    after = [r.payload for r in client.outbound[cut:] if r.kind == "media"]
    assert before and all(level(p) > 6_000 for p in before[1:])
    assert after, "the new utterance must be played after the clear"
    assert max(level(p) for p in after) < 3_000, "pre-interruption audio was sent after clear"
    assert bridge.playout.stats.frames_dropped > 0  # queued locally, never sent


async def test_ask_user_voice_answer_is_spoken(world: World) -> None:
    async with world.client():
        link = await started(world)
        asking = asyncio.create_task(
            world.gemini.tool_call("ask_user", {"question": "They only have 20:30. Take it?"})
        )
        await world.core.wait_until(lambda: bool(link.ask_requests))
        request = link.ask_requests[0]
        assert request.question == "They only have 20:30. Take it?"
        assert len(request.request_id) == 32 and request.timeout_sec > 0
        link.answer(request.request_id, "Yes, 20:30 is fine.", "voice")
        response = await asyncio.wait_for(asking, 10)
        assert response["mode"] == "voice"
        turn = await asyncio.wait_for(world.gemini.next_user_turn(), 10)
        assert turn.text == f"{ANSWER_PREFIX} Yes, 20:30 is fine."


async def test_ask_user_options_go_to_core_with_the_question(world: World) -> None:
    async with world.client():
        link = await started(world)
        args = {"question": "20:30 or 21:00?", "options": [" 20:30 ", "21:00", "", {"x": 1}]}
        asking = asyncio.create_task(world.gemini.tool_call("ask_user", args))
        await world.core.wait_until(lambda: bool(link.ask_requests))
        request = link.ask_requests[0]
        assert request.options == ("20:30", "21:00")  # blanks and non-strings dropped
        link.answer(request.request_id, "21:00", "voice")
        assert (await asyncio.wait_for(asking, 10))["mode"] == "voice"


async def test_ask_user_context_answer_is_silent_guidance(world: World) -> None:
    async with world.client():
        link = await started(world)
        asking = asyncio.create_task(
            world.gemini.tool_call("ask_user", {"question": "Is a deposit acceptable?"})
        )
        await world.core.wait_until(lambda: bool(link.ask_requests))
        link.answer(link.ask_requests[0].request_id, "Only up to 20 euros.", "context")
        response = await asyncio.wait_for(asking, 10)
        assert response["mode"] == "context"
        guidance = f"{GUIDANCE_PREFIX} Only up to 20 euros."
        await world.gemini.wait_until(lambda: guidance in world.gemini.received_texts)
        entry = next(c for c in client_content(world) if guidance in str(c))
        assert not either_case(entry, "turnComplete")  # context, not a turn to answer


async def test_ask_user_without_an_answer_tells_the_model_no_answer(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    async with (
        media_world(gemini, deepgram, ca_file, ask_user_timeout_sec=1) as world,
        world.client(),
    ):
        link = await started(world)
        response = await asyncio.wait_for(
            world.gemini.tool_call("ask_user", {"question": "Window seat?"}), 10
        )
        assert response == {"result": "no answer", "timed_out": True}
        assert len(link.ask_requests) == 1
        assert not any(ANSWER_PREFIX in t for t in world.gemini.received_texts)


async def test_end_call_reports_outcome_and_hangs_up_after_the_goodbye_played(
    world: World,
) -> None:
    async with world.client(call_sid="CA" + "2" * 32) as client:
        link = await started(world)
        # The whole goodbye arrives at once; playing it takes 600 ms of real time.
        await world.gemini.say(tone_24k(600, LOUD), "Thank you, goodbye!", pace=0)
        response = await world.gemini.tool_call(
            "end_call",
            {
                "outcome": "booked",
                "date_time": "2026-05-02T19:00",
                "guests": 4,
                "holder_name": "Anna",
                "summary": "Table for 4 booked at 19:00 under Anna.",
            },
        )
        assert "ok" in response["result"]
        await world.core.wait_until(lambda: bool(link.outcomes))
        await world.core.wait_until(lambda: link.closed)
    assert link.outcomes == [
        core_link.Outcome(
            "booked", "Table for 4 booked at 19:00 under Anna.", "2026-05-02T19:00", 4, "Anna"
        )
    ]
    assert world.phone.hangups == ["CA" + "2" * 32]
    (goodbye_mark,) = utterance_marks(r.name for r in client.outbound if r.kind == "mark")
    assert goodbye_mark in world.phone.echoed_at_hangup
    assert world.phone.heard_at_hangup >= 30  # all 600 ms of the goodbye were played


async def test_dtmf_is_allowed_once_a_menu_is_heard_and_the_stream_reattaches(
    world: World,
) -> None:
    world.deepgram.script_utterance("For reservations press 1.", at_audio_s=0.5)
    async with world.client(call_sid="CA" + "3" * 32) as client:
        link = await started(world)
        refused = await world.gemini.tool_call("send_dtmf", {"digits": "1"})
        assert "error" in refused and world.phone.dtmf == []

        await world.core.wait_until(lambda: any(d.kind == "ivr" for d in link.decisions))
        ivr = next(d for d in link.decisions if d.kind == "ivr")
        assert ivr.action == "allow_dtmf" and ivr.reason.startswith("cue:press")
        pressed = await world.gemini.tool_call("send_dtmf", {"digits": "1"})
        assert pressed == {"result": "pressed 1"}
        assert world.phone.dtmf == [("CA" + "3" * 32, "call-1", "1")]

        first_stream = client.stream_sid
        await client.restart()  # Twilio plays the digits, then connects a new stream
        assert client.stream_sid != first_stream
        conn = await world.gemini.current()
        before = conn.audio_bytes
        await world.gemini.wait_until(lambda: conn.audio_bytes > before + 6400)
        await world.gemini.say(tone_24k(200, SOFT))
        await client.wait_until(lambda: len(client.media(stream=2)) == 10)
    assert len(link.attaches) == 1  # one core session across both streams
    assert len(world.gemini.ready_connections) == 1  # one conversation
    assert world.phone.hangups == []


async def post_amd(world: World, call_sid: str, answered_by: str) -> httpx.Response:
    url = f"{world.base_url}/twilio/amd?{urllib.parse.urlencode({'call_id': 'call-1'})}"
    form = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "AnsweredBy": answered_by}
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    async with httpx.AsyncClient() as http:
        return await http.post(url, data=form, headers={"X-Twilio-Signature": signature})


async def test_voicemail_leaves_the_configured_message_then_hangs_up(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    message = "This is an AI assistant calling for Anna; we will call back."
    async with media_world(gemini, deepgram, ca_file, voicemail_message=message) as world:
        async with world.client(call_sid="CA" + "4" * 32) as client:
            link = await started(world)
            response = await post_amd(world, "CA" + "4" * 32, "machine_end_beep")
            assert response.status_code == 204
            assert [e.answered_by for e in world.sink.events] == ["machine_end_beep"]
            turn = await asyncio.wait_for(world.gemini.next_user_turn(), 10)
            assert message in turn.text
            await world.gemini.say(tone_24k(400, LOUD), message)
            await world.core.wait_until(lambda: link.closed)
        assert link.decisions[0] == core_link.DecisionReport(
            "voicemail", "amd:machine_end_beep", "leave_message"
        )
        assert [(o.outcome, o.ending) for o in link.outcomes] == [("needs_follow_up", "voicemail")]
        assert world.phone.hangups == ["CA" + "4" * 32]
        assert client.echoed and client.echoed[-1] in world.phone.echoed_at_hangup


async def test_voicemail_hang_up_setting_hangs_up_without_a_message(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    async with media_world(gemini, deepgram, ca_file, voicemail_action="hang_up") as world:
        async with world.client(call_sid="CA" + "5" * 32):
            link = await started(world)
            await post_amd(world, "CA" + "5" * 32, "machine_end_beep")
            await world.core.wait_until(lambda: link.closed)
        assert link.decisions[0].action == "hang_up"
        assert [(o.outcome, o.ending) for o in link.outcomes] == [("failed", "voicemail")]
        assert world.phone.hangups == ["CA" + "5" * 32]
        assert not any("answering machine" in t for t in world.gemini.received_texts)


async def test_silence_timeout_ends_the_call_with_an_outcome(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    async with media_world(
        gemini, deepgram, ca_file, silence_timeout_sec=1, goodbye_timeout_sec=1
    ) as world:
        async with world.client(call_sid="CA" + "6" * 32):
            link = await started(world)
            turn = await asyncio.wait_for(world.gemini.next_user_turn(), 10)
            assert "silent" in turn.text  # the model is asked to say goodbye first
            await world.core.wait_until(lambda: link.closed)
        assert [(o.outcome, o.ending) for o in link.outcomes] == [("failed", "silence")]
        assert world.phone.hangups == ["CA" + "6" * 32]


async def test_max_duration_ends_after_the_goodbye(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    async with media_world(gemini, deepgram, ca_file, max_call_duration_sec=1) as world:
        async with world.client(call_sid="CA" + "7" * 32) as client:
            link = await started(world)
            turn = await asyncio.wait_for(world.gemini.next_user_turn(), 10)
            assert "time limit" in turn.text
            # the agent's own end_call in the wrap-up carries the wrap-up's ending
            summary = {"outcome": "needs_follow_up", "summary": "Out of time.", "language": "en"}
            await world.gemini.tool_call("end_call", summary)
            await world.gemini.say(tone_24k(300, LOUD), "Sorry, I have to go. Goodbye!")
            await world.core.wait_until(lambda: link.closed)
        assert link.outcomes == [
            core_link.Outcome("needs_follow_up", "Out of time.", ending="time_limit", language="en")
        ]
        assert world.phone.hangups == ["CA" + "7" * 32]
        assert client.echoed[-1] in world.phone.echoed_at_hangup


async def test_go_away_mid_utterance_resumes_and_audio_continues(world: World) -> None:
    async with world.client() as client:
        await started(world)
        speaking = asyncio.create_task(world.gemini.say(tone_24k(2000, LOUD)))
        await client.wait_until(lambda: len(client.media()) >= 10)
        await world.gemini.go_away("1s")
        cut = await asyncio.wait_for(speaking, 10)
        assert cut.connection_closed
        await world.gemini.wait_until(lambda: len(world.gemini.ready_connections) == 2)
        resumed = world.gemini.ready_connections[1]
        assert resumed.resume_handle is not None
        await world.gemini.wait_until(lambda: resumed.audio_bytes > 6400)
        before = len(client.media())
        await world.gemini.say(tone_24k(300, SOFT), "As I was saying.")
        await client.wait_until(lambda: len(client.media()) >= before + 15)
        assert world.bridge().resumes == 1
    assert max(level(r.payload) for r in client.media()[before:]) < 3_000


def lose_the_ear(world: World) -> None:
    """Lose Deepgram for good: the key is revoked (a 401 is not retried), then the socket drops."""
    world.deepgram.api_key = "revoked-deepgram-key"
    world.deepgram.drop()


async def test_a_dropped_ear_reconnects_and_the_call_goes_on(world: World) -> None:
    dg = world.deepgram
    async with world.client():
        link = await started(world)
        await dg.wait_until(lambda: bool(dg.sessions) and dg.sessions[0].audio_s >= 1.0)
        dg.drop()
        await dg.wait_until(lambda: len(dg.sessions) == 2 and dg.sessions[1].audio_bytes > 0)
        first_s = dg.sessions[0].audio_s
        # Said on the new stream, whose clock starts at 0 again.
        dg.utterances.append(ScriptedUtterance("Sorry, the line broke.", 0.5, dg.word_s, key="b"))
        await world.core.wait_until(lambda: bool(callee_lines(link)))
        await agent_says(world, link, "No problem, a table for two?")
    assert callee_lines(link) == [("Sorry, the line broke.", "supervisor_stt")]
    assert not any(d.kind == "ear_lost" for d in link.decisions)
    (line,) = [t for t in link.transcripts if t.speaker == "callee"]
    # On the call's clock: after what the first stream heard (plus what the drop lost in flight).
    assert first_s * 1000 + 500 <= line.offset_ms <= first_s * 1000 + 1000


async def test_deepgram_lost_for_good_degrades_to_gemini_transcription(world: World) -> None:
    async with world.client():
        link = await started(world)
        await world.deepgram.wait_until(lambda: bool(world.deepgram.sessions))
        lose_the_ear(world)
        await world.core.wait_until(lambda: any(d.kind == "ear_lost" for d in link.decisions))
        assert link.decisions[0].action == "degrade"
        # The supervisor now reads Gemini's transcription of the callee.
        await world.gemini.transcribe_input("Please leave a message after the tone.")
        await world.core.wait_until(lambda: any(d.kind == "voicemail" for d in link.decisions))
        sources = {t.source for t in link.transcripts if t.speaker == "callee"}
        assert sources == {"gemini"}


def callee_lines(link: InMemoryCoreLink) -> list[tuple[str, str]]:
    return [(t.text, t.source) for t in link.transcripts if t.speaker == "callee"]


async def agent_says(world: World, link: InMemoryCoreLink, text: str) -> None:
    """A model turn, waited for until its line reached core: every model event sent before
    it (an input transcription) has been handled by then."""
    await world.gemini.say(tone_24k(200, SOFT), text, pace=0)
    await world.core.wait_until(lambda: any(t.text == text for t in link.transcripts))


async def test_a_callee_utterance_is_one_line_from_the_ear(world: World) -> None:
    world.deepgram.script_utterance("Yes, we have a table at seven.", at_audio_s=0.2)
    async with world.client():
        link = await started(world)
        await world.core.wait_until(lambda: bool(callee_lines(link)))
        # Gemini hears the same words; its copy stays internal while the ear works.
        await world.gemini.transcribe_input("yes we have a table at seven")
        await agent_says(world, link, "Great, for four please.")
    assert callee_lines(link) == [("Yes, we have a table at seven.", "supervisor_stt")]
    assert all(t.final for t in link.transcripts)  # the ear's interim result is not reported


async def test_the_callees_first_words_reach_the_ear_while_the_model_connects(
    world: World,
) -> None:
    # Quiet μ-law that is not silence (0xFF), so the ear's audio can be matched byte for byte.
    greeting = bytes([0xFE, 0xFD, 0x7E, 0x7D]) * 40 * 20  # 400 ms
    world.deepgram.script_utterance("Luigi's, good evening.", at_audio_s=0.0)
    world.core.attach_gate.clear()  # the bridge waits for core; Twilio's frames keep coming
    client = world.client()
    client.speak(greeting)
    async with client:
        await client.wait_until(lambda: client.sent_frames >= 40)  # 800 ms before the attach
        world.core.attach_gate.set()
        link = await started(world)
        await world.deepgram.wait_until(
            lambda: (
                bool(world.deepgram.sessions)
                and world.deepgram.sessions[0].audio_bytes > len(greeting)
            )
        )
        await world.core.wait_until(lambda: bool(callee_lines(link)))
    assert bytes(world.deepgram.sessions[0].audio[: len(greeting)]) == greeting
    assert [(t.text, t.source, t.offset_ms) for t in link.transcripts if t.speaker == "callee"] == [
        ("Luigi's, good evening.", "supervisor_stt", 0)
    ]


async def test_once_the_ear_is_lost_geminis_callee_lines_are_the_record(world: World) -> None:
    world.deepgram.script_utterance("Hello, Luigi's.", at_audio_s=0.2)
    async with world.client():
        link = await started(world)
        await world.core.wait_until(lambda: bool(callee_lines(link)))
        await world.gemini.transcribe_input("hello luigis")
        await agent_says(world, link, "Hi, a table for four tonight?")
        lose_the_ear(world)
        await world.core.wait_until(lambda: any(d.kind == "ear_lost" for d in link.decisions))
        await world.gemini.transcribe_input("We are fully booked tonight.")
        await world.core.wait_until(lambda: len(callee_lines(link)) == 2)
    assert callee_lines(link) == [
        ("Hello, Luigi's.", "supervisor_stt"),
        ("We are fully booked tonight.", "gemini"),
    ]


async def test_geminis_pieces_make_one_line_each_without_an_end_marker(world: World) -> None:
    """The schema's transcription has no `finished`: the callee's pieces end when the model
    starts answering, the agent's with its turn; each utterance is one line."""
    async with world.client():
        link = await started(world)
        await world.deepgram.wait_until(lambda: bool(world.deepgram.sessions))
        lose_the_ear(world)
        await world.core.wait_until(lambda: any(d.kind == "ear_lost" for d in link.decisions))
        await world.gemini.transcribe_input("We are fully")
        await world.gemini.transcribe_input(" booked tonight.")
        await agent_says(world, link, "I see, thank you anyway.")
        await world.core.wait_until(lambda: bool(callee_lines(link)))
    assert callee_lines(link) == [("We are fully booked tonight.", "gemini")]
    said = [t.text for t in link.transcripts if t.speaker == "agent"]
    assert said.count("I see, thank you anyway.") == 1


async def test_hang_up_from_core_hangs_up_at_once(world: World) -> None:
    async with world.client(call_sid="CA" + "8" * 32) as client:
        link = await started(world)
        link.hang_up("cancelled")
        await world.core.wait_until(lambda: link.closed)
        await client.wait_closed()
    assert world.phone.hangups == ["CA" + "8" * 32]
    assert link.outcomes == []


async def test_callee_hanging_up_ends_the_call_with_an_outcome(world: World) -> None:
    async with world.client() as client:
        link = await started(world)
        await client.stop()
        await world.core.wait_until(lambda: link.closed)
    assert [o.outcome for o in link.outcomes] == ["failed"]
    assert world.phone.hangups == []


async def test_a_lost_model_session_fails_the_call(world: World) -> None:
    async with world.client(call_sid="CA" + "a" * 32):
        link = await started(world)
        await world.gemini.fail(1007, "Request contains an invalid argument.")
        await world.core.wait_until(lambda: link.closed)
    assert [o.outcome for o in link.outcomes] == ["failed"]
    assert world.phone.hangups == ["CA" + "a" * 32]


async def test_an_unreachable_model_fails_the_call_at_once(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    async with (
        media_world(gemini, deepgram, ca_file, gemini_api_key="wrong-key") as world,
        world.client(call_sid="CA" + "b" * 32),
    ):
        link = await world.core.link("call-1")
        await world.core.wait_until(lambda: link.closed)
    assert [o.outcome for o in link.outcomes] == ["failed"]
    assert world.phone.hangups == ["CA" + "b" * 32]


def test_the_audio_fast_path_takes_only_plain_audio_and_transcripts() -> None:
    pcm = bytes(range(256)) * 4  # base64 of this uses both + and /
    std = base64.b64encode(pcm).decode()
    url = base64.urlsafe_b64encode(pcm).decode()
    part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": std}}
    plain = {"serverContent": {"modelTurn": {"parts": [part]}}}
    assert live_wire.parse_audio_content(json.dumps(plain)) == live_wire.AudioContent("", [pcm], "")
    part_url = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": url}}
    both = {
        "serverContent": {
            "modelTurn": {"parts": [part_url]},
            "outputTranscription": {"text": "Hi"},
        }
    }
    assert live_wire.parse_audio_content(json.dumps(both).encode()) == live_wire.AudioContent(
        "", [pcm], "Hi"
    )
    for other in (
        {"serverContent": {"modelTurn": {"parts": [part]}, "interrupted": True}},
        {"serverContent": {"turnComplete": True}},
        # Not in the schema's Transcription: left to the SDK, which reads only the text.
        {"serverContent": {"outputTranscription": {"text": "Hi", "finished": True}}},
        {"serverContent": {"modelTurn": {"parts": [{"text": "thinking"}]}}},
        {"serverContent": {"modelTurn": {"parts": [part]}}, "usageMetadata": {}},
        {"toolCall": {"functionCalls": []}},
        {"goAway": {"timeLeft": "1s"}},
    ):
        assert live_wire.parse_audio_content(json.dumps(other)) is None, other
    assert live_wire.parse_audio_content(b"not json") is None


async def test_upgrade_with_a_bad_signature_is_rejected(world: World) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await world.client(signature="not-a-valid-signature").connect()
    assert refused.value.response.status_code == 403
    assert world.app.state.registry.bridges == {}
    assert world.core.links == {}


# ---- drain on SIGTERM ------------------------------------------------------------------------


class DrainingServe:
    """Serves the media app as `media.server.main` does: under `drain.DrainingServer`."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def __call__(self, app: Any, port: int) -> AsyncIterator[str]:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = drain.DrainingServer(config, app.state.drain)
        self.task = task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task


async def draining(world: World) -> None:
    async def started() -> bool:
        return bool(world.app.state.drain.draining)

    await eventually(started, limit=5)


async def probe(world: World, path: str) -> tuple[int, str]:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(world.base_url + path)
    return response.status_code, response.json()["status"]


BOOKED = {
    "outcome": "booked",
    "date_time": "2026-05-02T19:00",
    "guests": 4,
    "holder_name": "Anna",
    "summary": "Table for 4 booked at 19:00 under Anna.",
}


async def test_sigterm_drains_a_call_that_finishes_and_ends_one_at_the_bound(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    serving = DrainingServe()
    sid_a, sid_b, sid_c = ("CA" + c * 32 for c in "def")
    async with media_world(
        gemini, deepgram, ca_file, serve=serving, media_drain_sec=3.0, goodbye_timeout_sec=1.0
    ) as world:
        async with world.client("call-a", call_sid=sid_a):
            link_a = await started(world, "call-a")
            conn_a = await world.gemini.current()
            async with world.client("call-b", call_sid=sid_b):
                link_b = await started(world, "call-b")
                conn_b = await world.gemini.current()
                assert conn_b is not conn_a

                signal.raise_signal(signal.SIGTERM)
                await draining(world)
                assert await probe(world, "/readyz") == (503, "draining")
                assert await probe(world, "/healthz") == (200, "ok")  # alive, just not ready
                late = world.client("call-c", call_sid=sid_c)
                await late.connect()
                assert await late.wait_closed() == 1013  # a new call is refused
                await late.close()

                await world.gemini.send_tool_call_on(conn_a, "end_call", BOOKED)
                await world.core.wait_until(lambda: link_a.closed)
                assert not link_b.closed  # the drain lets a live call go on
                await world.core.wait_until(lambda: link_b.closed, timeout_s=20)
                assert serving.task is not None
                await asyncio.wait_for(asyncio.shield(serving.task), 10)  # then uvicorn stops
    assert [o.outcome for o in link_a.outcomes] == ["booked"]
    assert link_b.outcomes == [drain.SHUT_DOWN]
    assert world.phone.hangups == [sid_a, sid_b]
    assert any("technical reasons" in text for text in conn_b.texts)  # asked for a goodbye
    assert not any("technical reasons" in text for text in conn_a.texts)
    assert "call-c" not in world.core.links


async def test_a_live_calls_stream_re_attaches_during_the_drain(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    world_cm = media_world(gemini, deepgram, ca_file, goodbye_timeout_sec=1.0)
    async with world_cm as world:
        world.deepgram.script_utterance("For reservations press 1.", at_audio_s=0.5)
        async with world.client(call_sid="CA" + "9" * 32) as client:
            link = await started(world)
            await world.core.wait_until(lambda: any(d.kind == "ivr" for d in link.decisions))
            drained = asyncio.create_task(world.app.state.drain.run())
            await draining(world)
            pressed = await world.gemini.tool_call("send_dtmf", {"digits": "1"})
            assert pressed == {"result": "pressed 1"}
            await client.restart()  # the call's new stream: accepted while draining
            await world.gemini.say(tone_24k(200, SOFT))
            await client.wait_until(lambda: len(client.media(stream=2)) == 10)
            assert not drained.done()
            await world.gemini.tool_call("end_call", BOOKED)
            await asyncio.wait_for(drained, 10)  # the last call ended: the drain is over
    assert len(link.attaches) == 1
    assert [o.outcome for o in link.outcomes] == ["booked"]


async def test_readyz_needs_core_serving_and_turns_false_while_draining(
    core: core_main.Core, gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    async with (
        media_world(gemini, deepgram, ca_file, core_grpc_target=nowhere) as alone,
        media_world(gemini, deepgram, ca_file, core_grpc_target=f"127.0.0.1:{core.port}") as world,
    ):
        assert await probe(alone, "/readyz") == (503, "core unavailable")
        assert await probe(world, "/readyz") == (200, "ready")
        await world.app.state.drain.run()  # no call: over at once
        assert await probe(world, "/readyz") == (503, "draining")


# ---- GrpcCoreLink against a real grpc.aio MediaSessionService ------------------------------


class SessionServicer(media_pb2_grpc.MediaSessionServiceServicer):
    """A tiny core: answers attach with a task, ask_user with an answer, outcome with hang-up."""

    def __init__(self) -> None:
        self.requests: list[media_pb2.SessionRequest] = []
        self.tokens: list[str] = []
        self.ended = asyncio.Event()

    async def Session(
        self,
        request_iterator: AsyncIterator[media_pb2.SessionRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[media_pb2.SessionResponse]:
        metadata = dict(context.invocation_metadata() or ())
        self.tokens.append(str(metadata.get("x-internal-token")))
        requests = aiter(request_iterator)
        attach = (await anext(requests)).attach
        if attach.call_id == "unknown":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such call")
        slots = struct_pb2.Struct()
        slots.update({"guests": 4, "name": "Anna"})
        task = media_pb2.SessionTask(
            call_id=attach.call_id,
            brief=BRIEF,
            language="ru",
            kind="restaurant_booking",
            parsed_slots=slots,
            ask_user_mode="stream",
        )
        yield media_pb2.SessionResponse(task=task)
        async for request in requests:
            self.requests.append(request)
            if request.HasField("ask_user"):
                answer = media_pb2.AskUserAnswer(
                    request_id=request.ask_user.request_id, answer="Yes", mode="context"
                )
                yield media_pb2.SessionResponse(answer=answer)
            elif request.HasField("outcome"):
                hang_up = media_pb2.HangUpCommand(reason="done")
                yield media_pb2.SessionResponse(hang_up=hang_up)
        self.ended.set()


@pytest.fixture
async def core_channel() -> AsyncIterator[tuple[grpc.aio.Channel, SessionServicer]]:
    servicer = SessionServicer()
    server = grpc.aio.server()
    media_pb2_grpc.add_MediaSessionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, servicer
    await server.stop(grace=None)


async def test_grpc_core_link_round_trip(
    core_channel: tuple[grpc.aio.Channel, SessionServicer],
) -> None:
    channel, servicer = core_channel
    link = core_link.GrpcCoreLink(channel, "internal-secret")
    task = await link.attach("call-9", "CA" + "9" * 32, "MZ" + "9" * 32, "pod-b")
    assert task == CallTask(
        "call-9", BRIEF, "ru", "restaurant_booking", {"guests": 4.0, "name": "Anna"}, "stream"
    )
    commands = aiter(link.commands())
    link.send_transcript(core_link.Transcript("callee", "Hello?", True, 120, "supervisor_stt"))
    link.ask_user(core_link.AskUser("a" * 32, "Take 20:30?", 60))
    assert await asyncio.wait_for(anext(commands), 5) == core_link.Answer(
        "a" * 32, "Yes", "context"
    )
    link.send_decision(core_link.DecisionReport("ivr", "cue:press 1", "allow_dtmf"))
    link.send_signal("ivr_menu")
    link.send_outcome(core_link.Outcome("booked", "Booked.", "2026-05-02T19:00", 4, "Anna"))
    assert await asyncio.wait_for(anext(commands), 5) == core_link.HangUp("done")
    await link.aclose()
    await asyncio.wait_for(servicer.ended.wait(), 5)  # media half-closed the stream

    assert servicer.tokens == ["internal-secret"]
    kinds = [r.WhichOneof("kind") for r in servicer.requests]
    assert kinds == ["transcript", "ask_user", "decision", "signal", "outcome"]
    transcript, ask, decision, signal, outcome = servicer.requests
    assert (transcript.transcript.source, transcript.transcript.offset_ms) == (
        "supervisor_stt",
        120,
    )
    assert (ask.ask_user.question, ask.ask_user.timeout_sec) == ("Take 20:30?", 60)
    assert decision.decision.action == "allow_dtmf" and signal.signal.name == "ivr_menu"
    assert outcome.outcome.HasField("guests") and outcome.outcome.guests == 4
    assert outcome.outcome.holder_name == "Anna"


async def test_grpc_core_link_refused_attach_is_a_core_link_error(
    core_channel: tuple[grpc.aio.Channel, SessionServicer],
) -> None:
    channel, _ = core_channel
    link = core_link.GrpcCoreLink(channel, "internal-secret")
    with pytest.raises(core_link.CoreLinkError, match="NOT_FOUND"):
        await link.attach("unknown", "CA" + "0" * 32, "MZ" + "0" * 32, "pod-b")
    await link.aclose()


@pytest.mark.parametrize("barge_in", [True, False], ids=["withdrawn", "kept"])
async def test_a_withdrawn_ask_user_gets_no_response_but_its_answer_still_reaches_the_model(
    world: World, barge_in: bool
) -> None:
    """ask_user is NON_BLOCKING: the model asks, then holds the line in the same turn. A
    barge-in on that turn makes the server withdraw the call (`toolCallCancellation`); the
    customer was asked all the same, so their answer still reaches the model, as a message,
    never as a response to the withdrawn id."""
    async with world.client() as client:
        link = await started(world)
        gemini = world.gemini
        conn = await gemini.current()
        assert not conn.blocks_on("ask_user") and conn.blocks_on("send_dtmf")  # as declared
        call_id = await gemini.send_tool_call_on(conn, "ask_user", {"question": "Take 20:30?"})
        holding = asyncio.create_task(gemini.say(tone_24k(3000, LOUD), "One moment, please."))
        await world.core.wait_until(lambda: bool(link.ask_requests))
        await client.wait_until(lambda: len(client.media()) >= 5)
        if barge_in:
            await gemini.interrupt()  # the callee talks over the hold line
        result = await asyncio.wait_for(holding, 10)
        assert result.interrupted is barge_in
        # A barrier: once the next turn's audio reaches the caller, the bridge has read
        # everything the server sent before it (the cancellation included).
        before = len(client.media())
        await gemini.say(tone_24k(300, SOFT))
        await client.wait_until(lambda: len(client.media()) > before)

        link.answer(link.ask_requests[0].request_id, "Yes, 20:30 is fine.", "voice")
        spoken = f"{ANSWER_PREFIX} Yes, 20:30 is fine."
        await gemini.wait_until(lambda: spoken in gemini.received_texts)
        responses = [r for r in gemini.tool_responses if r["id"] == call_id]
        withdrawn = "toolCallCancellation" in conn.kinds("server")
    assert withdrawn is barge_in
    if barge_in:
        assert responses == []
    else:
        assert [r.get("scheduling") for r in responses] == ["SILENT"]  # the message follows
