"""Whole simulated calls through the production adapters: the twilio SDK dials the sim's
carrier, which streams to a minimal in-test bridge; the bridge talks to the sim's Gemini
through `GeminiLiveSession` (google-genai) and to the sim's Deepgram through `DeepgramEar`
(deepgram-sdk). Signed callbacks land at `media.twilio.webhooks`. Only core and media's own
bridge are left out (the lead's end-to-end tests cover them)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from media.codec import twilio_codec as codec
from media.codec.audio import (
    Downsampler24to8,
    OutboundFramer,
    Upsampler8to16,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)
from media.providers.agent_prompt import (
    DEFAULT_DISCLOSURES,
    build_system_instruction,
    customer_answer_text,
    greeting_cue,
    voicemail_cue,
)
from media.providers.deepgram_ear import (
    CalleeTranscript,
    DeepgramConfig,
    DeepgramEar,
    transcribe_recording,
)
from media.providers.gemini_live import (
    AudioOut,
    GeminiLiveSession,
    GenerationComplete,
    InputTranscript,
    Interrupted,
    OutputTranscript,
    ToolCall,
    TurnComplete,
)
from media.twilio.webhooks import (
    TelephonyEvent,
    signature_valid_for_websocket,
    twilio_webhook_routes,
)
from sim.agent_session import SimAgents
from sim.carrier import SimCarrier
from sim.deepgram_server import FakeDeepgram
from sim.gemini_live_server import FakeGeminiLive
from sim.twilio_rest import FakeTwilioRest, LoopbackServer
from sim.world import World, WorldTranscripts
from telephony.twilio_rest import TwilioTelephony

VOICEMAIL_MESSAGE = "Hello, this is an AI assistant calling about a booking. We will call back."
ACCOUNT = "AC" + "5151" * 8
TOKEN = "sim-calls-twilio-token"
GEMINI_KEY = "sim-calls-gemini-key"
DEEPGRAM_KEY = "sim-calls-deepgram-key"
TOMORROW = (datetime.date.today() + datetime.timedelta(days=1)).isoformat()

pytestmark = pytest.mark.timeout(180)


class Sink:
    """Every signature-checked Twilio callback, in arrival order."""

    def __init__(self) -> None:
        self.events: list[TelephonyEvent] = []
        self._changed = asyncio.Condition()

    async def deliver(self, event: TelephonyEvent) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, call_sid: str, kind: str | None = None) -> list[TelephonyEvent]:
        return [e for e in self.events if e.call_sid == call_sid and kind in (None, e.kind)]

    async def wait(self, predicate: Callable[[], bool], limit_s: float = 90) -> None:
        async with asyncio.timeout(limit_s), self._changed:
            await self._changed.wait_for(predicate)


@dataclasses.dataclass(eq=False)
class CallLog:
    """What the bridge saw of one call, across its streams."""

    brief: str
    slots: dict[str, Any]
    language: str
    answer: str = "yes"
    call_sid: str = ""
    tools: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    outcome: dict[str, Any] | None = None
    heard: list[str] = dataclasses.field(default_factory=list)  # Gemini input transcription
    said: list[str] = dataclasses.field(default_factory=list)  # Gemini output transcription
    ear: list[CalleeTranscript] = dataclasses.field(default_factory=list)
    interruptions: int = 0
    marks: list[str] = dataclasses.field(default_factory=list)
    streams: int = 0

    def tool_names(self) -> list[str]:
        return [name for name, _ in self.tools]


class MiniBridge:
    """Just enough of media's bridge: Twilio stream ⇄ Gemini Live, callee audio → Deepgram,
    tool calls → the twilio SDK. Production codecs and adapters do all of the work."""

    def __init__(
        self, gemini: FakeGeminiLive, deepgram: FakeDeepgram, telephony: TwilioTelephony
    ) -> None:
        self.gemini = gemini
        self.deepgram = deepgram
        self.telephony = telephony
        self.stream_url = ""
        self.calls: dict[str, CallLog] = {}

    async def handle(self, ws: WebSocket) -> None:
        signature = ws.headers.get("x-twilio-signature")
        if not signature_valid_for_websocket(TOKEN, self.stream_url, signature):
            await ws.close(1008)
            return
        await ws.accept()
        start: codec.Start | None = None
        while start is None:
            event = codec.parse(await ws.receive_text())
            start = event if isinstance(event, codec.Start) else None
        call_id = start.custom_parameters["call_id"]
        log = self.calls[call_id]
        log.call_sid, log.streams = start.call_sid, log.streams + 1
        instruction = build_system_instruction(
            log.brief, log.language, "restaurant_booking", log.slots, DEFAULT_DISCLOSURES["en"]
        )
        session = GeminiLiveSession(
            GEMINI_KEY,
            base_url=self.gemini.base_url,
            ssl_context=self.gemini.ssl_client_context(),
            system_instruction=instruction,
            call_id=call_id,
        )
        config = DeepgramConfig(
            SecretStr(DEEPGRAM_KEY),
            http_base=self.deepgram.http_base,
            ws_base=self.deepgram.ws_base,
        )
        ear = DeepgramEar(config, call_id=call_id)
        async with session, ear:
            await session.send_text(greeting_cue())
            helpers = [
                asyncio.create_task(self._from_gemini(ws, start, session, log)),
                asyncio.create_task(self._from_ear(ear, log)),
            ]
            try:
                await self._from_twilio(ws, session, ear, log)
            finally:
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)

    async def _from_twilio(
        self, ws: WebSocket, session: GeminiLiveSession, ear: DeepgramEar, log: CallLog
    ) -> None:
        up = Upsampler8to16()
        while True:
            try:
                event = codec.parse(await ws.receive_text())
            except WebSocketDisconnect:
                return
            if isinstance(event, codec.Media):
                await session.send_audio(up.process(ulaw_to_pcm16(event.payload)))
                ear.push(event.payload)
            elif isinstance(event, codec.Mark):
                log.marks.append(event.name)
            elif isinstance(event, codec.Stop):
                return

    async def _from_ear(self, ear: DeepgramEar, log: CallLog) -> None:
        async for event in ear.events():
            if isinstance(event, CalleeTranscript) and event.is_final:
                log.ear.append(event)

    async def _from_gemini(
        self, ws: WebSocket, start: codec.Start, session: GeminiLiveSession, log: CallLog
    ) -> None:
        sid = start.stream_sid
        down, framer = Downsampler24to8(), OutboundFramer()
        async for event in session.events():
            if isinstance(event, AudioOut):
                for frame in framer.push(pcm16_to_ulaw(down.process(event.pcm24k))):
                    await ws.send_text(codec.media(sid, frame))
            elif isinstance(event, TurnComplete | GenerationComplete):
                for frame in framer.flush():
                    await ws.send_text(codec.media(sid, frame))
            elif isinstance(event, Interrupted):
                log.interruptions += 1
                framer.clear()
                await ws.send_text(codec.clear(sid))
            elif isinstance(event, InputTranscript):
                log.heard.append(event.text)
            elif isinstance(event, OutputTranscript):
                log.said.append(event.text)
            elif isinstance(event, ToolCall):
                await self._tool(ws, sid, session, event, log)

    async def _tool(
        self, ws: WebSocket, sid: str, session: GeminiLiveSession, call: ToolCall, log: CallLog
    ) -> None:
        log.tools.append((call.name, call.args))
        if call.name == "ask_user":  # answered at once, the way media.call.tools delivers it
            result = {"result": "answered; the answer follows as a message", "mode": "voice"}
            await session.send_tool_response(call.id, call.name, result)
            await session.send_text(customer_answer_text(log.answer, "voice"))
            return
        await session.send_tool_response(call.id, call.name, {"result": "ok"})
        if call.name == "report_signal" and call.args.get("name") == "voicemail":
            await session.send_text(voicemail_cue(VOICEMAIL_MESSAGE))
        elif call.name == "send_dtmf":
            await self.telephony.send_dtmf(
                log.call_sid, start_call_id(log, self), call.args["digits"]
            )
        elif call.name == "end_call":
            log.outcome = call.args
            await ws.send_text(codec.mark(sid, "goodbye"))
            async with asyncio.timeout(30):
                while "goodbye" not in log.marks:  # noqa: ASYNC110 - the reader appends it
                    await asyncio.sleep(0.02)
            await self.telephony.hang_up(log.call_sid)


def start_call_id(log: CallLog, bridge: MiniBridge) -> str:
    return next(call_id for call_id, found in bridge.calls.items() if found is log)


@dataclasses.dataclass
class Stack:
    world: World
    rest: FakeTwilioRest
    carrier: SimCarrier
    gemini: FakeGeminiLive
    agents: SimAgents
    deepgram: FakeDeepgram
    bridge: MiniBridge
    telephony: TwilioTelephony
    sink: Sink

    def dump(self, sid: str) -> str:
        """The conversation as text, for assertion messages."""
        conv = self.world.get(sid)
        lines = conv.lines if conv is not None else []
        return "\n".join(f"{x.speaker} {x.act} cut={x.interrupted}: {x.text}" for x in lines)

    async def call(self, number: str, brief: str, **kwargs: Any) -> tuple[str, CallLog]:
        call_id = f"call-{len(self.bridge.calls) + 1}"
        log = CallLog(brief=brief, slots=kwargs.pop("slots", {}), language="en", **kwargs)
        self.bridge.calls[call_id] = log
        sid = await self.telephony.dial(call_id, number)
        final = ("completed", "busy", "no_answer", "failed", "cancelled")
        await self.sink.wait(
            lambda: any(e.status in final for e in self.sink.of(sid, "status")), limit_s=150
        )
        return sid, log


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    world = World(speed=10.0, word_ms=150.0)
    agents = SimAgents(world, customer_timeout_s=60)
    sink = Sink()
    async with (
        FakeTwilioRest(ACCOUNT, TOKEN) as rest,
        FakeGeminiLive(api_key=GEMINI_KEY, agent=agents) as gemini,
        FakeDeepgram(DEEPGRAM_KEY, source=WorldTranscripts(world)) as deepgram,
    ):
        carrier = SimCarrier(rest, world=world, talk_seconds=1.0)
        app = Starlette()
        server = LoopbackServer(app, websockets=True)
        telephony = TwilioTelephony(ACCOUNT, TOKEN, "+15005550006", server.base_url, rest.base_url)
        bridge = MiniBridge(gemini, deepgram, telephony)
        bridge.stream_url = f"ws://127.0.0.1:{server.port}/twilio/stream"
        for route in twilio_webhook_routes(TOKEN, server.base_url, sink):
            app.router.routes.append(route)
        app.router.routes.append(WebSocketRoute("/twilio/stream", bridge.handle))
        try:
            async with server:
                yield Stack(world, rest, carrier, gemini, agents, deepgram, bridge, telephony, sink)
                await carrier.aclose()
        finally:
            await carrier.aclose()
            await telephony.aclose()


def statuses(stack: Stack, sid: str) -> list[str | None]:
    return [e.status for e in stack.sink.of(sid, "status")]


async def test_books_as_asked_with_recording_and_transcripts(stack: Stack) -> None:
    sid, log = await stack.call("+15550100", "Table for 2 tomorrow at 19:00 under Anna")
    assert log.outcome is not None
    assert log.outcome["outcome"] == "booked"
    assert log.outcome["date_time"] == f"{TOMORROW}T19:00"
    assert log.outcome["guests"] == 2 and log.outcome["holder_name"] == "Anna"
    assert statuses(stack, sid) == ["dialing", "ringing", "in_progress", "completed"]
    assert [e.answered_by for e in stack.sink.of(sid, "amd")] == ["human"]
    said = "".join(log.said)
    assert said.startswith(DEFAULT_DISCLOSURES["en"])
    assert "Trattoria Roma" in " ".join(log.heard)
    assert any("Trattoria Roma" in t.text for t in log.ear)
    assert all(t.words and t.words[0][1] < t.words[-1][2] for t in log.ear)
    assert "goodbye" in log.marks
    leg = stack.carrier.legs[-1]
    assert leg.protocol_errors == [] and leg.ended_by == "carrier"
    assert leg.marks_echoed == ["goodbye"]

    await stack.sink.wait(lambda: bool(stack.sink.of(sid, "recording")))
    recording = stack.sink.of(sid, "recording")[0]
    assert recording.recording_sid is not None and recording.recording_status == "completed"
    media = await stack.telephony.fetch_recording(recording.recording_sid)
    assert media.startswith(b"RIFF")
    config = DeepgramConfig(
        SecretStr(DEEPGRAM_KEY), http_base=stack.deepgram.http_base, ws_base=stack.deepgram.ws_base
    )
    words = await transcribe_recording(media, "en", config=config)
    text = " ".join(w.text for w in words)
    assert text.startswith(DEFAULT_DISCLOSURES["en"])  # the outbound track: the agent's voice
    assert "Trattoria" not in text


async def test_negotiating_venues_at_once(stack: Stack) -> None:
    """Four calls share the world at the same time; each finds its own conversation."""
    brief = "Table for 4 tomorrow at 19:00 under Anna"
    (_, accepted), (_, declined), (_, refused), (sid, talked_over) = await asyncio.gather(
        stack.call("+15550102", brief),
        stack.call("+15550102", brief, answer="no"),
        stack.call("+15550101", brief),
        stack.call("+15550109", brief),
    )
    assert accepted.tool_names() == ["ask_user", "end_call"]
    assert "20:30" in accepted.tools[0][1]["question"]
    assert accepted.outcome is not None and accepted.outcome["outcome"] == "booked"
    assert accepted.outcome["date_time"] == f"{TOMORROW}T20:30"

    assert declined.tool_names() == ["ask_user", "end_call"]
    assert declined.outcome is not None and declined.outcome["outcome"] == "alternative_offered"

    assert refused.outcome is not None and refused.outcome["outcome"] == "refused"
    assert refused.outcome["refusal_reason"] == "we are fully booked that evening"

    assert talked_over.interruptions >= 1, stack.dump(sid)
    leg = next(leg for leg in stack.carrier.legs if leg.call_sid == sid)
    assert leg.clears >= 1
    assert talked_over.outcome is not None and talked_over.outcome["outcome"] == "booked"


async def test_menus_machines_and_hang_ups_at_once(stack: Stack) -> None:
    brief = "Table for 2 tomorrow at 19:00 under Anna"
    (ivr_sid, ivr), (vm_sid, voicemail), (gone_sid, gone), (_, russian) = await asyncio.gather(
        stack.call("+15550106", brief),
        stack.call("+15550105", brief),
        stack.call("+15550107", brief),
        stack.call("+15550108", "Столик на 3 завтра в 20:00 на имя Иван"),
    )
    assert stack.rest.call(ivr_sid).digits == ["1"]
    assert ("report_signal", {"name": "ivr_menu"}) in ivr.tools
    assert ivr.streams == 2  # the DTMF update replaced the stream
    assert ivr.outcome is not None and ivr.outcome["outcome"] == "booked", stack.dump(ivr_sid)
    assert [e.answered_by for e in stack.sink.of(ivr_sid, "amd")] == ["unknown"]

    assert [e.answered_by for e in stack.sink.of(vm_sid, "amd")] == ["machine_end_beep"]
    assert ("report_signal", {"name": "voicemail"}) in voicemail.tools
    assert "".join(voicemail.said).strip() == VOICEMAIL_MESSAGE
    assert voicemail.outcome is not None and voicemail.outcome["outcome"] == "needs_follow_up"

    assert statuses(stack, gone_sid)[-1] == "completed"
    gone_leg = next(leg for leg in stack.carrier.legs if leg.call_sid == gone_sid)
    assert gone_leg.ended_by == "carrier"
    assert gone.outcome is None or gone.outcome["outcome"] != "booked"

    assert russian.outcome is not None and russian.outcome["outcome"] == "booked"
    assert russian.outcome["holder_name"] == "Иван" and russian.outcome["guests"] == 3
    assert "Пельменная" in " ".join(russian.heard)
