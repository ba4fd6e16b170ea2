"""GeminiLiveSession through the real google-genai SDK against the loopback fake over TLS."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.genai import errors as genai_errors
from google.genai import types
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from media.providers.agent_prompt import (
    ANSWER_PREFIX,
    build_system_instruction,
    customer_answer_text,
)
from media.providers.gemini_live import (
    AudioOut,
    GeminiLiveError,
    GeminiLiveSession,
    GenerationComplete,
    InputTranscript,
    Interrupted,
    LiveEvent,
    OutputTranscript,
    Resumed,
    SessionLost,
    TokensUsed,
    ToolCall,
    ToolCallCancelled,
    TurnComplete,
    make_client,
)
from sim import live_schema
from sim.live_quirks import CLOSE_REASONS
from tests.fakes.gemini_live import FakeGeminiLive, LiveConnection

KEY = "test-gemini-key-0123456789"
DISCLOSURE = "Hello, this is an AI assistant calling on behalf of Anna."
SILENCE_20MS = bytes(640)
LOUD_20MS = (8000).to_bytes(2, "little", signed=True) * 320


def tone_24k(ms: int) -> bytes:
    """Recognisable non-silent 24 kHz PCM16 (a ramp), `ms` long."""
    return b"".join((i % 2000).to_bytes(2, "little", signed=True) for i in range(24 * ms))


@pytest.fixture
async def fake() -> AsyncIterator[FakeGeminiLive]:
    """The stand-in, with every frame it sends checked against the published v1beta schema."""
    errors: list[str] = []

    def check(direction: str, raw: bytes) -> None:
        error = live_schema.server_frame_errors(raw) if direction == "server" else None
        if error is not None:
            errors.append(error)

    async with FakeGeminiLive(api_key=KEY) as server:
        server.frame_tap = check
        yield server
    assert errors == []


def session_for(fake: FakeGeminiLive, *, api_key: str = KEY, **kwargs: Any) -> GeminiLiveSession:
    instruction = build_system_instruction(
        "Book a table for 4 tomorrow at 19:00 under Anna.",
        "en",
        "restaurant_booking",
        {"guests": 4, "time": "19:00", "name": "Anna"},
        DISCLOSURE,
    )
    return GeminiLiveSession(
        api_key,
        base_url=fake.base_url,
        ssl_context=fake.ssl_client_context(),
        system_instruction=instruction,
        voice="Kore",
        language_code="en-US",
        backoff_initial_s=0.01,
        **kwargs,
    )


@pytest.fixture
async def live(fake: FakeGeminiLive) -> AsyncIterator[GeminiLiveSession]:
    async with session_for(fake) as session:
        yield session


async def until(events: AsyncIterator[LiveEvent], stop: type[LiveEvent]) -> list[LiveEvent]:
    """Events up to and including the first `stop`."""
    seen: list[LiveEvent] = []
    async with asyncio.timeout(10):
        async for event in events:
            seen.append(event)
            if isinstance(event, stop):
                return seen
    raise AssertionError(f"event stream ended before {stop.__name__}: {seen}")


async def settle_handle(fake: FakeGeminiLive, events: AsyncIterator[LiveEvent]) -> str:
    """Issue a fresh handle and wait until the client has read past it."""
    handle = await fake.resumption_update()
    assert handle is not None
    await fake.send({"serverContent": {"turnComplete": True}})  # a barrier the client reports
    await until(events, TurnComplete)
    return handle


async def test_setup_carries_model_tools_transcription_and_disclosure_first(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    conn = fake.ready_connections[0]
    assert (
        conn.path == "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    )
    assert conn.model == "models/gemini-3.8-live"
    assert sorted(conn.tool_names) == ["ask_user", "end_call", "report_signal", "send_dtmf"]
    end_call = conn.function_declarations["end_call"]["parameters"]
    assert end_call["properties"]["outcome"]["enum"] == [
        "booked",
        "refused",
        "alternative_offered",
        "needs_follow_up",
        "failed",
    ]
    assert sorted(end_call["required"]) == ["outcome", "summary"]
    assert conn.input_transcription and conn.output_transcription
    first_sentence = conn.system_instruction.split('"')[:2]
    assert first_sentence[1] == DISCLOSURE
    assert "first sentence" in first_sentence[0]
    assert conn.setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    realtime = conn.setup["realtimeInputConfig"]
    assert realtime["activityHandling"] == "START_OF_ACTIVITY_INTERRUPTS"
    assert realtime["automaticActivityDetection"]["disabled"] is False
    assert conn.setup["sessionResumption"] == {}
    behaviors = {name: d.get("behavior") for name, d in conn.function_declarations.items()}
    assert behaviors == {
        "ask_user": "NON_BLOCKING",
        "end_call": "NON_BLOCKING",
        "send_dtmf": "BLOCKING",
        "report_signal": "NON_BLOCKING",
    }
    assert conn.blocks_on("send_dtmf") and not conn.blocks_on("ask_user")
    assert "contextWindowCompression" in conn.setup
    assert conn.resume_handle is None


async def test_caller_audio_reaches_the_server(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    for _ in range(10):
        await live.send_audio(SILENCE_20MS)
    await fake.wait_until(lambda: fake.audio_bytes_received >= 6400)
    conn = fake.ready_connections[0]
    assert conn.audio_bytes == 6400
    assert conn.audio_chunks == 10
    assert conn.audio_mime_types == {"audio/pcm;rate=16000"}


async def test_model_turns_arrive_as_typed_events(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    events = live.events()
    audio = tone_24k(200)
    transcript = "Good evening, I would like a table for four."
    result = await fake.say(audio, transcript, pace=0, input_transcript="Hello, Roma restaurant")
    seen = await until(events, TurnComplete)

    assert result.audio_bytes_sent == len(audio) and not result.interrupted
    assert seen[0] == InputTranscript("Hello, Roma restaurant")
    assert b"".join(e.pcm24k for e in seen if isinstance(e, AudioOut)) == audio
    said = [e for e in seen if isinstance(e, OutputTranscript)]
    assert "".join(e.text for e in said) == transcript
    assert [type(e) for e in seen[-2:]] == [GenerationComplete, TurnComplete]

    # receive() stops after each turn: the second turn must still come through.
    await fake.say(tone_24k(40), "Anything else?", pace=0)
    second = await until(events, TurnComplete)
    assert any(isinstance(e, AudioOut) for e in second)


async def test_interruption_is_an_event(fake: FakeGeminiLive, live: GeminiLiveSession) -> None:
    events = live.events()
    speaking = asyncio.create_task(fake.say(tone_24k(3000), "a long sentence", chunk_ms=20))
    await until(events, AudioOut)
    await fake.interrupt()
    seen = await until(events, TurnComplete)
    result = await speaking

    assert result.interrupted and result.audio_bytes_sent < len(tone_24k(3000))
    assert Interrupted() in seen
    assert GenerationComplete() not in seen


async def test_loud_caller_audio_barges_in(fake: FakeGeminiLive, live: GeminiLiveSession) -> None:
    events = live.events()
    speaking = asyncio.create_task(fake.say(tone_24k(3000), "a long sentence", chunk_ms=20))
    await until(events, AudioOut)
    await live.send_audio(LOUD_20MS)
    seen = await until(events, TurnComplete)
    assert (await speaking).interrupted
    assert Interrupted() in seen


async def test_tool_call_round_trip_keeps_the_id(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    events = live.events()
    asked = asyncio.create_task(fake.tool_call("ask_user", {"question": "Is 20:30 fine?"}))
    (call,) = [e for e in await until(events, ToolCall) if isinstance(e, ToolCall)]
    assert call.name == "ask_user" and call.args == {"question": "Is 20:30 fine?"}
    assert call.id.startswith("fc-")

    silent = types.FunctionResponseScheduling.SILENT
    await live.send_tool_response(call.id, call.name, {"answer": "yes"}, scheduling=silent)
    assert await asyncio.wait_for(asked, 10) == {"answer": "yes"}
    assert fake.tool_responses == [
        {"id": call.id, "name": "ask_user", "response": {"answer": "yes"}, "scheduling": "SILENT"}
    ]


async def test_send_text_reaches_the_server_as_client_content(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    await live.send_text(customer_answer_text("Yes, 20:30 is fine.", "voice"))
    turn = await asyncio.wait_for(fake.next_user_turn(), 10)
    assert turn.kind == "text"
    assert fake.received_texts == [f"{ANSWER_PREFIX} Yes, 20:30 is fine."]
    assert "clientContent" in fake.ready_connections[0].kinds("client")


async def test_go_away_resumes_with_the_last_handle(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    events = live.events()
    handle = await settle_handle(fake, events)
    await fake.go_away("5s")
    for _ in range(5):  # sent during the reconnect: buffered, then flushed
        await live.send_audio(SILENCE_20MS)
    (resumed,) = [e for e in await until(events, Resumed) if isinstance(e, Resumed)]

    assert resumed.gap_ms >= 0
    old, new = fake.ready_connections
    assert old.close_code == 1000
    assert new.resume_handle == handle and new.session_id == old.session_id
    for _ in range(5):
        await live.send_audio(SILENCE_20MS)
    await fake.wait_until(lambda: fake.audio_bytes_received >= 6400)
    assert new.audio_bytes > 0
    await fake.say(tone_24k(40), "still here", pace=0)
    assert any(isinstance(e, AudioOut) for e in await until(events, TurnComplete))


async def test_go_away_lets_the_model_finish_its_sentence_first(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    events = live.events()
    audio = tone_24k(600)
    speaking = asyncio.create_task(fake.say(audio, "one two three four", chunk_ms=20))
    first = await until(events, AudioOut)
    leaving = asyncio.create_task(fake.go_away("30s"))
    seen = await until(events, Resumed)
    await leaving
    assert not (await speaking).interrupted

    assert b"".join(e.pcm24k for e in first + seen if isinstance(e, AudioOut)) == audio
    turn_end = [type(e) for e in seen if not isinstance(e, TokensUsed)][-3:]  # usage may ride along
    assert turn_end == [GenerationComplete, TurnComplete, Resumed]
    old, new = fake.ready_connections
    assert new.resume_handle == old.issued_handles[-1]  # taken after the turn, not before


async def test_abrupt_drop_resumes_and_delivers_a_pending_tool_response(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    events = live.events()
    handle = await settle_handle(fake, events)
    asked = asyncio.create_task(fake.tool_call("ask_user", {"question": "Deposit ok?"}))
    (call,) = [e for e in await until(events, ToolCall) if isinstance(e, ToolCall)]
    await fake.drop()
    await live.send_tool_response(call.id, call.name, {"answer": "no deposit"})

    await until(events, Resumed)
    assert await asyncio.wait_for(asked, 10) == {"answer": "no deposit"}
    old, new = fake.ready_connections
    assert old.close_code == 1006
    assert new.resume_handle == handle
    assert live.reconnects == 1


async def test_rejected_resumption_ends_the_session(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    events = live.events()
    await settle_handle(fake, events)
    fake.handles.clear()  # the server no longer knows the handle
    await fake.drop()
    seen = await until(events, SessionLost)
    lost = seen[-1]
    assert isinstance(lost, SessionLost) and "1007" in lost.reason
    assert [e async for e in events] == []
    with pytest.raises(GeminiLiveError):
        await live.send_text("anyone there?")


async def test_unreachable_server_ends_the_session_after_bounded_retries(
    fake: FakeGeminiLive,
) -> None:
    async with session_for(fake, max_reconnect_attempts=3) as live:
        events = live.events()
        await settle_handle(fake, events)
        await fake.aclose()  # closes the socket with 1001 and stops listening
        lost = (await until(events, SessionLost))[-1]
        assert isinstance(lost, SessionLost) and "could not reconnect" in lost.reason
        assert live.reconnects == 0
        assert len(fake.connections) == 1


async def test_a_shared_client_outlives_its_sessions(fake: FakeGeminiLive) -> None:
    shared = make_client(KEY, fake.base_url + "/", fake.ssl_client_context())
    try:
        for _ in range(2):
            async with session_for(fake, client=shared) as live:
                await live.send_text("hello")
            await fake.wait_until(lambda: all(c.closed.is_set() for c in fake.connections))
    finally:
        await shared.aio.aclose()
        shared.close()
    assert fake.received_texts == ["hello", "hello"]
    assert [c.path.startswith("/ws/") for c in fake.connections] == [True, True]


async def test_drop_before_any_handle_is_a_lost_session() -> None:
    async with FakeGeminiLive(api_key=KEY, issue_handles=False) as fake:
        async with session_for(fake) as live:
            events = live.events()
            await fake.drop()
            seen = await until(events, SessionLost)
        assert len(fake.connections) == 1
    assert "handle" in str(seen[-1])


async def test_wrong_api_key_is_a_clear_error(fake: FakeGeminiLive) -> None:
    session = session_for(fake, api_key="wrong-key-42")
    with pytest.raises(GeminiLiveError) as caught:
        await session.start()
    error = caught.value
    assert error.code == 1008 and not error.retryable
    assert "API key" in str(error) and "wrong-key-42" not in str(error)
    assert [e async for e in session.events()] == []
    assert len(fake.connections) == 1


def test_system_instruction_opens_with_the_disclosure() -> None:
    text = build_system_instruction(
        "Забронировать столик на четверых завтра в 19:00 на имя Анна.",
        "ru",
        "restaurant_booking",
        {"time": "19:00", "guests": 4, "note": None},
        "Здравствуйте, это ИИ-ассистент.",
    )
    first = text.split("\n")[0]
    assert first.startswith(
        'Your very first sentence on this call must be this honest disclosure: "'
    )
    assert "Здравствуйте, это ИИ-ассистент." in first
    assert "- guests: 4\n- time: 19:00" in text and "note" not in text
    assert "Speak Russian" in text and "book a table" in text
    for tool in ("ask_user", "end_call", "send_dtmf", "report_signal", "voicemail"):
        assert tool in text


async def test_fake_speaks_the_documented_camel_case_wire_form(fake: FakeGeminiLive) -> None:
    path = "//ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    url = f"wss://127.0.0.1:{fake.port}{path}"
    ctx = fake.ssl_client_context()
    headers = {"x-goog-api-key": KEY}
    async with connect(url, ssl=ctx, additional_headers=headers) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/x", "sessionResumption": {}}}))
        assert "setupComplete" in json.loads(await ws.recv())
        assert "sessionResumptionUpdate" in json.loads(await ws.recv())
        audio = {"data": base64.b64encode(SILENCE_20MS).decode(), "mimeType": "audio/pcm;rate=8000"}
        await ws.send(json.dumps({"realtimeInput": {"audio": audio}}))
        turn = {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turnComplete": True}
        await ws.send(json.dumps({"clientContent": turn}))
        await fake.wait_until(lambda: fake.received_texts == ["hi"])
    conn = fake.connections[0]
    assert conn.audio_bytes == 640 and conn.audio_mime_types == {"audio/pcm;rate=8000"}
    for other in ("/ws/other", path.replace(".v1beta.", ".v1.")):  # only the pinned version
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"wss://127.0.0.1:{fake.port}{other}", ssl=ctx):
                pass
        assert refused.value.response.status_code == 404


async def test_aclose_ends_the_connection_with_a_clean_1000(fake: FakeGeminiLive) -> None:
    session = session_for(fake)
    await session.start()
    await fake.say(tone_24k(40), "Hello.", pace=0)
    await session.aclose()
    await fake.wait_until(lambda: fake.connections[0].closed.is_set())
    assert fake.connections[0].close_code == 1000
    assert fake.close_codes == {1000: 1}


async def test_a_frame_outside_the_schema_is_closed_with_1007_and_a_reason(
    fake: FakeGeminiLive,
) -> None:
    client = make_client(KEY, fake.base_url, fake.ssl_client_context())
    async with client.aio.live.connect(model="gemini-3.8-live", config={}) as session:
        ws = session._ws
        await ws.send('{"realtime_input": {"audio": {"data": "AAAA", "finished": true}}}')
        with pytest.raises(genai_errors.APIError) as closed:
            async for _ in session.receive():
                pass
    assert closed.value.code == 1007
    assert 'Unknown name "finished"' in str(closed.value)
    await fake.wait_until(lambda: fake.connections[0].closed.is_set())
    assert fake.connections[0].close_code == 1007


def usages(conn: LiveConnection) -> list[dict[str, Any]]:
    return [m["usageMetadata"] for d, _, m in conn.log if d == "server" and "usageMetadata" in m]


async def test_usage_is_counted_per_turn_from_what_was_heard_and_said(
    fake: FakeGeminiLive, live: GeminiLiveSession
) -> None:
    events = live.events()
    for _ in range(50):  # one second of caller audio: 32 tokens
        await live.send_audio(SILENCE_20MS)
    await fake.wait_until(lambda: fake.audio_bytes_received >= 50 * len(SILENCE_20MS))
    await fake.say(tone_24k(500), "Good evening.", pace=0)
    await until(events, TurnComplete)
    await fake.say(tone_24k(1000), "A table for four, please.", pace=0)
    await until(events, TurnComplete)

    first, second = usages(await fake.current())
    for usage in (first, second):  # the SDK and the published schema both read it
        assert live_schema.server_frame_errors(json.dumps({"usageMetadata": usage})) is None
        parsed = types.UsageMetadata.model_validate(usage)
        assert parsed.total_token_count == usage["promptTokenCount"] + usage["responseTokenCount"]
    assert first["responseTokenCount"] == 16 and second["responseTokenCount"] == 32  # 32/s
    assert first["responseTokensDetails"] == [{"modality": "AUDIO", "tokenCount": 16}]
    prompt = {d["modality"]: d["tokenCount"] for d in first["promptTokensDetails"]}
    assert prompt["AUDIO"] == 32  # the caller's second of audio
    assert prompt["TEXT"] > 100  # the system instruction and the tools, as Google bills them
    # Per turn, not running totals: the next prompt is the context, the last answer included.
    assert second["promptTokenCount"] == first["promptTokenCount"] + 16


@pytest.mark.parametrize(("code", "retried"), [(1011, True), (1007, False), (1008, False)], ids=str)
async def test_error_closes_resume_or_end_the_session_as_google_means_them(
    fake: FakeGeminiLive, live: GeminiLiveSession, code: int, retried: bool
) -> None:
    events = live.events()
    handle = await settle_handle(fake, events)
    conn = await fake.current()
    await fake.fail_on(conn, code, CLOSE_REASONS[code])
    if retried:  # an internal error is transient: resume the same conversation
        await until(events, Resumed)
        old, new = fake.ready_connections
        assert (old.close_code, new.resume_handle) == (code, handle)
        await fake.say(tone_24k(40), "Sorry, as I was saying.", pace=0)
        assert any(isinstance(e, AudioOut) for e in await until(events, TurnComplete))
    else:  # a bad request or a policy refusal would only be refused again
        lost = (await until(events, SessionLost))[-1]
        assert isinstance(lost, SessionLost)
        assert str(code) in lost.reason and CLOSE_REASONS[code] in lost.reason
        assert len(fake.connections) == 1 and live.reconnects == 0


@pytest.mark.parametrize("barge_in", [True, False], ids=["barge-in", "no-barge-in"])
async def test_a_barge_in_withdraws_the_interrupted_turns_pending_calls(
    fake: FakeGeminiLive, live: GeminiLiveSession, barge_in: bool
) -> None:
    events = live.events()
    conn = await fake.current()
    asked = await fake.send_tool_call_on(conn, "ask_user", {"question": "Take 20:30?"})
    pressed = await fake.send_tool_call_on(conn, "send_dtmf", {"digits": "1"})  # BLOCKING
    speaking = asyncio.create_task(fake.say(tone_24k(3000), "One moment, please.", chunk_ms=20))
    await until(events, AudioOut)
    if barge_in:
        await live.send_audio(LOUD_20MS)
    else:
        await live.send_tool_response(asked, "ask_user", {"result": "asked"})
    seen = await until(events, TurnComplete)
    await speaking
    await fake.say(tone_24k(40), "", pace=0)  # a barrier: everything before it was read
    seen += await until(events, TurnComplete)

    cancelled = [e for e in seen if isinstance(e, ToolCallCancelled)]
    # Only the NON_BLOCKING call of the turn the callee cut off is withdrawn; a BLOCKING
    # call held the model and is not part of it, and an answered call has nothing to cancel.
    assert cancelled == ([ToolCallCancelled((asked,))] if barge_in else [])
    assert pressed not in conn.turn_calls
    assert ("toolCallCancellation" in conn.kinds("server")) is barge_in
