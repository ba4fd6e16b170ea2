"""Whole simulated calls through media's real bridge: the twilio SDK dials the sim's carrier,
which streams to the media process (`media.server.create_app`, one `CallBridge` per call);
the bridge talks to the sim's Gemini through google-genai and to the sim's Deepgram through
deepgram-sdk, and reports to an in-memory core (`InMemoryCore`). Signed callbacks land at
`media.twilio.webhooks`. Only core itself is left out (the end-to-end venue tests cover it);
what the bridge reported to core is what these tests read."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import itertools
import json
import pathlib
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from core.adapters.deepgram_batch import DeepgramBatch
from media.call.core_link import CallTask, Outcome
from media.providers.agent_prompt import DEFAULT_DISCLOSURES
from media.server import create_app
from media.settings import MediaSettings
from media.twilio.webhooks import TelephonyEvent
from sim import live_schema, scenario_files, truth
from sim.agent_session import SimAgents
from sim.carrier import SimCarrier
from sim.deepgram_server import FakeDeepgram
from sim.gemini_live_server import FakeGeminiLive
from sim.live_connection import either_case
from sim.scenario_files import Scenarios
from sim.twilio_rest import FakeTwilioRest
from sim.world import World, WorldTranscripts
from telephony.settings import TwilioSettings
from telephony.twilio_rest import TwilioTelephony
from tests import mp3_frames
from tests.conftest import INTERNAL_TOKEN, assert_twilio_wire_clean, free_port, serve_asgi
from tests.dates import tomorrow, tomorrows_since
from tests.fakes.core_link import InMemoryCore, InMemoryCoreLink

VOICEMAIL_MESSAGE = "Hello, this is an AI assistant calling about a booking. We will call back."
ACCOUNT = "AC" + "5151" * 8
TOKEN = "sim-calls-twilio-token"
GEMINI_KEY = "sim-calls-gemini-key"
DEEPGRAM_KEY = "sim-calls-deepgram-key"
FINAL = ("completed", "busy", "no_answer", "failed", "cancelled")

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
class Call:
    """What the bridge reported to core about one call."""

    sid: str
    link: InMemoryCoreLink

    @property
    def outcome(self) -> Outcome | None:
        return self.link.outcomes[-1] if self.link.outcomes else None

    def transcript(self, speaker: str, source: str) -> list[str]:
        return [t.text for t in self.link.transcripts if (t.speaker, t.source) == (speaker, source)]

    @property
    def said(self) -> list[str]:
        """The agent's lines (Gemini's output transcription)."""
        return self.transcript("agent", "gemini")

    @property
    def heard(self) -> str:
        """The callee as reported to core (the ear's lines; Gemini's only once it is lost)."""
        return " ".join(t.text for t in self.link.transcripts if t.speaker == "callee")

    @property
    def ear(self) -> list[str]:
        """The callee as Deepgram (the supervisor's ear) had it."""
        return self.transcript("callee", "supervisor_stt")

    @property
    def questions(self) -> list[str]:
        return [r.question for r in self.link.ask_requests]


async def answer_every_question(core: InMemoryCore, call_id: str, answer: str) -> None:
    """Play the customer: answer each ask_user of the call by voice, as soon as it arrives."""
    link = await core.link(call_id, timeout_s=120)
    answered: list[str] = []

    def new_question() -> bool:
        return len(link.ask_requests) > len(answered)

    while True:
        await core.wait_until(new_question, timeout_s=300)
        for request in link.ask_requests[len(answered) :]:
            link.answer(request.request_id, answer, "voice")
            answered.append(request.request_id)


class Wire:
    """Every frame the sim's Gemini sent, checked against the published v1beta schema
    (unknown fields are errors), and the setups the bridge sent it."""

    def __init__(self) -> None:
        self.server_frames = 0
        self.errors: list[str] = []
        self.setups: list[dict[str, Any]] = []
        self.responses: list[tuple[str, str | None]] = []  # (tool, scheduling) media sent

    def tap(self, direction: str, raw: bytes) -> None:
        if direction == "server":
            self.server_frames += 1
            error = live_schema.server_frame_errors(raw)
            if error is not None:
                self.errors.append(error)
        elif raw.lstrip().startswith(b'{"setup"'):
            self.setups.append(json.loads(raw)["setup"])
        elif b"ool_response" in raw or b"oolResponse" in raw:
            reply = either_case(json.loads(raw), "toolResponse")
            for response in either_case(reply, "functionResponses") or []:
                self.responses.append((response["name"], response.get("scheduling")))

    def scheduling(self, tool: str) -> set[str | None]:
        return {scheduling for name, scheduling in self.responses if name == tool}


@dataclasses.dataclass
class Stack:
    world: World
    rest: FakeTwilioRest
    carrier: SimCarrier
    gemini: FakeGeminiLive
    deepgram: FakeDeepgram
    core: InMemoryCore
    tasks: dict[str, CallTask]
    telephony: TwilioTelephony
    sink: Sink
    wire: Wire
    ids: itertools.count[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def dump(self, sid: str) -> str:
        """The conversation as text, for assertion messages."""
        conv = self.world.get(sid)
        lines = conv.lines if conv is not None else []
        return "\n".join(f"{x.speaker} {x.act} cut={x.interrupted}: {x.text}" for x in lines)

    async def call(
        self, number: str, brief: str, *, answer: str = "yes", language: str = "en"
    ) -> Call:
        call_id = f"call-{next(self.ids)}"
        self.tasks[call_id] = CallTask(call_id, brief, language, "restaurant_booking")
        customer = asyncio.create_task(answer_every_question(self.core, call_id, answer))
        try:
            sid = await self.telephony.dial(call_id, number)
            await self.sink.wait(
                lambda: any(e.status in FINAL for e in self.sink.of(sid, "status")), limit_s=150
            )
            link = await self.core.link(call_id)
            await self.core.wait_until(lambda: link.closed, timeout_s=30)  # reports flushed
        finally:
            customer.cancel()
            await asyncio.gather(customer, return_exceptions=True)
        return Call(sid, link)


def ca_file(gemini: FakeGeminiLive, directory: pathlib.Path) -> str:
    path = directory / "gemini-ca.pem"
    ders = gemini.ssl_client_context().get_ca_certs(binary_form=True)
    path.write_text("".join(ssl.DER_cert_to_PEM_cert(der) for der in ders))
    return str(path)


@pytest.fixture
def scenarios(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Scenarios:
    """The shipped venues; parametrized with a function that writes TOML, those plus that one
    user file, loaded from a SIM_SCENARIOS_DIR-style folder exactly as `sim.main` loads them."""
    write: Callable[[], str] | None = getattr(request, "param", None)
    if write is None:
        return scenario_files.shipped()
    folder = tmp_path / "my-venues"
    folder.mkdir()
    (folder / "venue.toml").write_text(write(), encoding="utf-8")
    return scenario_files.load(folder)


@pytest.fixture
async def stack(tmp_path: pathlib.Path, scenarios: Scenarios) -> AsyncIterator[Stack]:
    world = World(speed=10.0, word_ms=150.0)
    agents = SimAgents(world, customer_timeout_s=60)
    sink = Sink()
    tasks: dict[str, CallTask] = {}
    core = InMemoryCore(lambda call_id: tasks[call_id])
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    async with (
        FakeTwilioRest(ACCOUNT, TOKEN) as rest,
        FakeGeminiLive(api_key=GEMINI_KEY, agent=agents) as gemini,
        FakeDeepgram(DEEPGRAM_KEY, source=WorldTranscripts(world)) as deepgram,
    ):
        carrier = SimCarrier(rest, world=world, talk_seconds=1.0, scenarios=scenarios)
        telephony = TwilioTelephony(ACCOUNT, TOKEN, "+15005550006", public, rest.base_url)
        twilio = TwilioSettings(twilio_auth_token=TOKEN, public_base_url=public)
        media = MediaSettings(
            internal_token=INTERNAL_TOKEN,
            gemini_api_key=SecretStr(GEMINI_KEY),
            gemini_base_url=gemini.base_url,
            gemini_ca_file=ca_file(gemini, tmp_path),
            deepgram_api_key=SecretStr(DEEPGRAM_KEY),
            deepgram_ws_base=deepgram.ws_base,
            deepgram_http_base=deepgram.http_base,
            voicemail_message=VOICEMAIL_MESSAGE,
        )
        wire = Wire()
        gemini.frame_tap = wire.tap
        app = create_app(media, twilio, core_links=core, phone=telephony, sink=sink)
        try:
            async with serve_asgi(app, port=port):
                yield Stack(
                    world, rest, carrier, gemini, deepgram, core, tasks, telephony, sink, wire
                )
                await carrier.aclose()
                assert_twilio_wire_clean(carrier)
        finally:
            await carrier.aclose()
            await telephony.aclose()


_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def closed_tomorrow() -> str:
    """A user's venue file: closed tomorrow, and the day after should the call straddle
    midnight (built when the test runs, not when it is collected)."""
    day = datetime.date.fromisoformat(tomorrow()).weekday()
    return f"""\
number = "+15550177"
name = "Closed Day Bistro"
story = "closed on the day asked: refuses"
language = "en"
host = "Hugo"
answering = "human"
manner = "polite"

[hours]
opens = "12:00"
closes = "23:00"
closed_on = ["{_DAYS[day]}", "{_DAYS[(day + 1) % 7]}"]

[booking]
behaviour = "as_asked"
"""


async def assert_clean_gemini_wire(stack: Stack, *, cut_1011: int = 0) -> None:
    """Every frame the sim's Gemini sent is schema-valid, and every session the bridge opened
    was closed cleanly (1000), not cancelled inside the SDK (1011), except the `cut_1011`
    connections the sim itself closed with 1011 (a venue's `close_after_turn`)."""
    gemini = stack.gemini
    async with asyncio.timeout(30):
        await gemini.wait_until(lambda: not gemini.connections)
    assert stack.wire.server_frames > 0
    assert stack.wire.errors == []
    codes = collections.Counter(gemini.close_codes)
    assert codes.pop(1011, 0) == cut_1011 and set(codes) == {1000}, gemini.close_codes


def statuses(stack: Stack, sid: str) -> list[str | None]:
    return [e.status for e in stack.sink.of(sid, "status")]


async def test_books_as_asked_with_recording_and_transcripts(stack: Stack) -> None:
    asked = tomorrow()
    call = await stack.call("+15550100", "Table for 2 tomorrow at 19:00 under Anna")
    sid = call.sid
    assert call.outcome is not None, stack.dump(sid)
    assert call.outcome.outcome == "booked"
    day, _, hour = call.outcome.date_time.partition("T")
    assert day in tomorrows_since(asked) and hour == "19:00"
    assert call.outcome.guests == 2 and call.outcome.holder_name == "Anna"
    assert call.outcome.venue_name == "Trattoria Roma" and call.outcome.language == "en"
    assert statuses(stack, sid) == ["dialing", "ringing", "in_progress", "completed"]
    assert [e.answered_by for e in stack.sink.of(sid, "amd")] == ["human"]
    assert call.said[0].startswith(DEFAULT_DISCLOSURES["en"])
    # Deepgram hears this call's venue, found by its audio, from the first frame on: the
    # greeting, said while the model session was still connecting, is heard too. Each venue
    # line is reported once, from the ear; Gemini's copy is not reported.
    assert "Trattoria Roma" in call.heard
    conv = stack.world.get(sid)
    assert conv is not None
    venue_lines = [line.text for line in conv.lines if line.speaker == "venue"]
    assert call.ear and call.ear[0] == venue_lines[0], stack.dump(sid)
    assert not collections.Counter(call.ear) - collections.Counter(venue_lines)  # each once
    assert call.transcript("callee", "gemini") == []
    (leg,) = [leg for leg in stack.carrier.legs if leg.call_sid == sid]
    # Every message both ways had Twilio's documented shape (and was checked: the counts).
    assert leg.violations == [] and leg.violation_count == 0
    assert leg.wire.checked["bridge"] > 100 and leg.wire.checked["carrier"] > 100
    hang_ups = [u for u in stack.rest.updates if u.form.get("Status") == "completed"]
    assert [u.call_sid for u in hang_ups] == [sid]  # the bridge hung up through the REST API
    assert leg.marks_echoed  # the bridge marked its utterances; the carrier echoed them
    # Provider usage: Gemini's per-turn usageMetadata summed, the ear's audio counted, sent as
    # running totals (each report at least the one before) with the last after the ear closed.
    assert call.link.usage, stack.dump(sid)
    usage = call.link.usage[-1]
    assert usage.gemini_input_tokens > 0 and usage.gemini_output_tokens > 0
    assert [u.gemini_input_tokens for u in call.link.usage] == sorted(
        u.gemini_input_tokens for u in call.link.usage
    )
    (final,) = [e for e in stack.sink.of(sid, "status") if e.status == "completed"]
    assert final.duration_sec is not None
    # The ear hears the whole stream, which is the answered call. Audio runs in real time
    # while the sim's CallDuration counts its compressed world clock (elapsed x speed).
    speed = stack.world.speed
    streamed_s = usage.deepgram_live_ms / 1000
    assert abs(streamed_s * speed - final.duration_sec) <= 3 * speed, (streamed_s, speed)

    await stack.sink.wait(lambda: bool(stack.sink.of(sid, "recording")))
    recording = stack.sink.of(sid, "recording")[0]
    assert recording.recording_sid is not None and recording.recording_status == "completed"
    async with stack.telephony.open_recording(recording.recording_sid) as got:
        media = b"".join([chunk async for chunk in got.chunks])
    assert got.content_type == "audio/mpeg" and mp3_frames.frames(media)  # MP3, frame by frame
    await assert_clean_gemini_wire(stack)
    batch = DeepgramBatch(SecretStr(DEEPGRAM_KEY), http_base=stack.deepgram.http_base)
    words = await batch.transcribe(media, "en")
    text = " ".join(w.text for w in words)
    assert text.startswith(DEFAULT_DISCLOSURES["en"])  # the outbound track: the agent's voice
    assert "Trattoria" not in text


async def test_negotiating_venues_at_once(stack: Stack) -> None:
    """Four calls share the world at the same time; each finds its own conversation."""
    brief = "Table for 4 tomorrow at 19:00 under Anna"
    asked = tomorrow()
    accepted, declined, refused, talked_over = await asyncio.gather(
        stack.call("+15550102", brief),
        stack.call("+15550102", brief, answer="no"),
        stack.call("+15550101", brief),
        stack.call("+15550109", brief),
    )
    assert len(accepted.questions) == 1 and "20:30" in accepted.questions[0]
    # the agent's choices reach core with the question (the ask_user tool's options)
    offered = accepted.link.ask_requests[0].options
    assert len(offered) == 2 and "20:30" in offered[0]
    assert accepted.outcome is not None and accepted.outcome.outcome == "booked"
    day, _, hour = accepted.outcome.date_time.partition("T")
    assert day in tomorrows_since(asked) and hour == "20:30"
    # The hold line and the answer after it play back to back; each is a true turn of its own.
    accepted_conv = stack.world.get(accepted.sid)
    assert accepted_conv is not None
    true_agent = [t.text for t in truth.true_turns(accepted_conv) if t.speaker == "agent"]
    assert true_agent == accepted.said, stack.dump(accepted.sid)

    assert len(declined.questions) == 1
    assert declined.outcome is not None and declined.outcome.outcome == "alternative_offered"

    assert refused.outcome is not None and refused.outcome.outcome == "refused"
    assert refused.outcome.refusal_reason == "we are fully booked that evening"

    sid = talked_over.sid
    conv = stack.world.get(sid)
    assert conv is not None
    assert any(line.speaker == "agent" and line.interrupted for line in conv.lines), stack.dump(sid)
    (leg,) = [leg for leg in stack.carrier.legs if leg.call_sid == sid]
    assert leg.clears >= 1
    assert talked_over.outcome is not None and talked_over.outcome.outcome == "booked"
    # NON_BLOCKING tools, as declared: the model went on talking, and each answer told it how
    # to take it (SILENT: the customer's answer follows as its own message).
    assert stack.wire.scheduling("ask_user") == {"SILENT"}
    assert stack.wire.scheduling("end_call") == {"SILENT"}
    await assert_clean_gemini_wire(stack)


async def test_menus_machines_and_hang_ups_at_once(stack: Stack) -> None:
    brief = "Table for 2 tomorrow at 19:00 under Anna"
    ivr, voicemail, gone, russian = await asyncio.gather(
        stack.call("+15550106", brief),
        stack.call("+15550105", brief),
        stack.call("+15550107", brief),
        stack.call("+15550108", "Столик на 3 завтра в 20:00 на имя Иван", language="ru"),
    )
    assert stack.rest.call(ivr.sid).digits == ["1"]
    assert "ivr_menu" in ivr.link.signals
    ivr_legs = [leg for leg in stack.carrier.legs if leg.call_sid == ivr.sid]
    assert len(ivr_legs) == 2  # the DTMF update replaced the stream
    assert len(ivr.link.attaches) == 1  # ... and the bridge carried on with the same call
    assert ivr.outcome is not None and ivr.outcome.outcome == "booked", stack.dump(ivr.sid)
    # send_dtmf is BLOCKING (the sim's model held still until the keys were pressed), so its
    # response takes no scheduling; report_signal is NON_BLOCKING and answered SILENT.
    assert stack.wire.scheduling("send_dtmf") == {None}
    assert stack.wire.scheduling("report_signal") == {"SILENT"}
    assert [e.answered_by for e in stack.sink.of(ivr.sid, "amd")] == ["unknown"]

    assert [e.answered_by for e in stack.sink.of(voicemail.sid, "amd")] == ["machine_end_beep"]
    assert any(d.kind == "voicemail" for d in voicemail.link.decisions)
    assert voicemail.said[-1] == VOICEMAIL_MESSAGE, stack.dump(voicemail.sid)
    assert voicemail.outcome is not None and voicemail.outcome.outcome == "needs_follow_up"
    assert voicemail.outcome.ending == "voicemail"

    assert statuses(stack, gone.sid)[-1] == "completed"
    (gone_leg,) = [leg for leg in stack.carrier.legs if leg.call_sid == gone.sid]
    assert gone_leg.ended_by == "carrier"
    assert gone.outcome is None or gone.outcome.outcome != "booked"

    assert russian.outcome is not None and russian.outcome.outcome == "booked"
    assert russian.outcome.holder_name == "Иван" and russian.outcome.guests == 3
    assert russian.outcome.venue_name == "Пельменная №1" and russian.outcome.language == "ru"
    assert "Пельменная" in russian.heard
    # The Russian task's language is set deliberately: the default model is native audio,
    # which takes no speechConfig.languageCode, so the system instruction states it.
    # The venue closes the first connection with 1011: the resumed one is set up the same way.
    setups = [s for s in stack.wire.setups if "Speak Russian" in json.dumps(s, ensure_ascii=False)]
    assert len(setups) == 2, stack.dump(russian.sid)
    for setup in setups:
        speech = setup.get("generationConfig", {}).get("speechConfig") or {}
        assert "language_code" not in speech and "languageCode" not in speech
    assert russian.said[0].startswith(DEFAULT_DISCLOSURES["ru"]), stack.dump(russian.sid)
    # ... and the ear listens for Russian on the Russian call only (nova-3 takes `ru`).
    languages = [s.params["language"] for s in stack.deepgram.sessions]
    assert languages.count("ru") >= 1 and set(languages) == {"ru", "en-US"}
    await assert_clean_gemini_wire(stack, cut_1011=1)  # Пельменная closes 1011 once: resumed


@pytest.mark.parametrize("scenarios", [closed_tomorrow], indirect=True, ids=["closed-tomorrow"])
async def test_a_venue_from_a_users_scenario_file_answers_as_written(stack: Stack) -> None:
    call = await stack.call("+15550177", "Table for 2 tomorrow at 19:00 under Anna")
    assert call.outcome is not None, stack.dump(call.sid)
    assert call.outcome.outcome == "refused", stack.dump(call.sid)
    assert call.outcome.venue_name == "Closed Day Bistro"
    assert (call.outcome.refusal_reason or "").startswith("we are closed on ")
    assert "Closed Day Bistro" in call.heard and "Hugo" in call.heard  # its greeting, as written


def flaky_model_line() -> str:
    """A user's venue whose model connection is cut twice: a planned goAway after the agent's
    first turn, then an internal error (1011) after its second."""
    return """\
number = "+15550191"
name = "Flaky Line Bistro"
story = "books as asked while the model's connection is cut twice"
language = "en"
host = "Ines"
answering = "human"
manner = "polite"

[hours]
opens = "12:00"
closes = "23:00"

[booking]
behaviour = "offers_other_time"

[gemini]
go_away_after_turn = 1
go_away_time_left_s = 2
close_after_turn = 2
close_code = 1011
"""


@pytest.mark.parametrize("scenarios", [flaky_model_line], indirect=True, ids=["flaky-line"])
async def test_a_call_survives_a_go_away_and_an_internal_error_with_the_same_conversation(
    stack: Stack,
) -> None:
    call = await stack.call("+15550191", "Table for 2 tomorrow at 19:00 under Anna")
    sid = call.sid
    assert call.outcome is not None and call.outcome.outcome == "booked", stack.dump(sid)
    gemini = stack.gemini
    async with asyncio.timeout(30):
        await gemini.wait_until(lambda: not gemini.connections)
    # Both cuts were resumed with a handle: the same session went on, not a new one.
    assert gemini.resumptions == 2, stack.dump(sid)
    assert dict(gemini.close_codes) == {1000: 2, 1011: 1}  # the goAway leave is clean
    assert stack.wire.errors == []
    # No turn lost or said twice: what core got is what the agent truly said, in order.
    conv = stack.world.get(sid)
    assert conv is not None
    true_agent = [t.text for t in truth.true_turns(conv) if t.speaker == "agent"]
    assert true_agent == call.said, stack.dump(sid)
    assert len(call.questions) == 1  # the question survived the cuts, asked once


def refused_model_line() -> str:
    """A user's venue whose model connection is closed for policy (1008) after one turn."""
    return (
        flaky_model_line()
        .replace("+15550191", "+15550192")
        .replace("go_away_after_turn = 1\ngo_away_time_left_s = 2\n", "")
        .replace("close_after_turn = 2", "close_after_turn = 1")
        .replace("close_code = 1011", "close_code = 1008")
    )


@pytest.mark.parametrize("scenarios", [refused_model_line], indirect=True, ids=["refused-line"])
async def test_a_policy_close_is_not_retried_and_fails_the_call(stack: Stack) -> None:
    call = await stack.call("+15550192", "Table for 2 tomorrow at 19:00 under Anna")
    assert call.outcome is not None and call.outcome.outcome == "failed", stack.dump(call.sid)
    assert "voice model" in call.outcome.summary
    assert stack.gemini.resumptions == 0  # a 1008 would only be refused again
    assert stack.gemini.close_codes[1008] == 1
    assert statuses(stack, call.sid)[-1] == "completed"  # hung up, not left open
