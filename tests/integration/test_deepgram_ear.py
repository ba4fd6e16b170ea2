"""DeepgramEar (media) and DeepgramBatch (core) through the real deepgram-sdk against the loopback
fake Deepgram: query parameters and auth on the wire, typed transcripts with word timings,
KeepAlive, CloseStream, drops and refused keys ending in exactly one EarLost (reconnection is
in test_deepgram_ear_reconnect)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import httpx
import pytest
from deepgram.listen.v1.types.listen_v1results import ListenV1Results
from pydantic import SecretStr

from core.adapters.deepgram_batch import DeepgramBatch, TranscriptionError
from media.providers.deepgram_ear import (
    CalleeTranscript,
    DeepgramConfig,
    DeepgramEar,
    EarEvent,
    EarLost,
    SpeechStarted,
    UtteranceEnd,
)
from sim.deepgram_server import FakeDeepgram

SILENCE_20MS = b"\xff" * 160


@pytest.fixture
async def fake() -> AsyncIterator[FakeDeepgram]:
    async with FakeDeepgram() as fake:
        yield fake


def _config(fake: FakeDeepgram, key: str | None = None) -> DeepgramConfig:
    return DeepgramConfig(
        api_key=SecretStr(key or fake.api_key), http_base=fake.http_base, ws_base=fake.ws_base
    )


async def _feed(ear: DeepgramEar, fake: FakeDeepgram, seconds: float) -> None:
    """Push silence in 0.5 s bursts, letting the fake take each in (the buffer is bounded)."""
    base = fake.sessions[0].audio_bytes if fake.sessions else 0
    for burst in range(1, round(seconds * 2) + 1):
        for _ in range(25):
            ear.push(SILENCE_20MS)
        await fake.wait_until(functools.partial(_received, fake, base + burst * 25 * 160))


def _received(fake: FakeDeepgram, audio_bytes: int) -> bool:
    return bool(fake.sessions) and fake.sessions[0].audio_bytes >= audio_bytes


async def _collect(ear: DeepgramEar, until: type | None = None) -> list[EarEvent]:
    """Events up to and including the first `until` event (or until the stream ends)."""
    seen: list[EarEvent] = []
    async with asyncio.timeout(10):
        async for event in ear.events():
            seen.append(event)
            if until is not None and isinstance(event, until):
                break
    return seen


async def test_stream_sends_telephony_query_params_and_token_auth(fake: FakeDeepgram) -> None:
    async with DeepgramEar(_config(fake), language="ru") as ear:
        ear.push(SILENCE_20MS)
        await fake.wait_until(lambda: bool(fake.sessions) and fake.sessions[0].audio_bytes > 0)
    session = fake.sessions[0]
    assert session.params == {
        "model": "nova-3",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "300",
        "utterance_end_ms": "1000",
        "smart_format": "true",
        "vad_events": "true",
        "punctuate": "true",
        "language": "ru",
    }
    assert session.headers["Authorization"] == f"Token {fake.api_key}"
    assert session.audio == bytearray(SILENCE_20MS)


async def test_interim_and_final_transcripts_arrive_typed_with_word_timings(
    fake: FakeDeepgram,
) -> None:
    fake.script_utterance("Hello, who is calling?", at_audio_s=0.5)
    async with DeepgramEar(_config(fake)) as ear:
        await _feed(ear, fake, 3.0)
        events = await _collect(ear, until=UtteranceEnd)

    assert events[0] == SpeechStarted(timestamp=0.5)
    *interims, final = [e for e in events if isinstance(e, CalleeTranscript)]
    # Interims grow word by word, as Deepgram's do; the final settles the utterance.
    assert [(i.text, i.is_final, i.speech_final) for i in interims] == [
        ("Hello,", False, False),
        ("Hello, who", False, False),
        ("Hello, who is", False, False),
        ("Hello, who is calling?", False, False),
    ]
    assert (final.is_final, final.speech_final) == (True, True)
    assert final.text == "Hello, who is calling?"
    assert final.words == [
        ("Hello,", 0.5, 0.8),
        ("who", 0.8, 1.1),
        ("is", 1.1, 1.4),
        ("calling?", 1.4, 1.7),
    ]
    assert (final.start_s, final.end_s) == pytest.approx((0.5, 1.7))
    assert events[-1] == UtteranceEnd(last_word_end=1.7)


async def test_keepalive_is_sent_while_no_audio_flows(fake: FakeDeepgram) -> None:
    async with DeepgramEar(_config(fake), keepalive_interval_s=0.05):
        await fake.wait_until(lambda: bool(fake.sessions) and fake.sessions[0].keepalives >= 2)
    assert set(fake.sessions[0].controls) == {"KeepAlive", "CloseStream"}


async def test_aclose_sends_close_stream_and_delivers_the_flushed_final(
    fake: FakeDeepgram,
) -> None:
    fake.script_utterance("Please hold.", at_audio_s=0.2)
    ear = DeepgramEar(_config(fake))
    async with ear:
        await _feed(ear, fake, 0.5)  # speech started, not yet endpointed
    events = await _collect(ear)

    session = fake.sessions[0]
    assert session.controls[-1] == "CloseStream"
    assert session.close_code == 1000
    assert [m["type"] for m in session.sent][-1] == "Metadata"
    finals = [e for e in events if isinstance(e, CalleeTranscript) and e.is_final]
    assert [f.text for f in finals] == ["Please hold."]
    assert not any(isinstance(e, EarLost) for e in events)


async def test_aclose_is_bounded_when_deepgram_never_answers_close_stream(
    fake: FakeDeepgram,
) -> None:
    fake.stalled = True
    ear = DeepgramEar(_config(fake), close_timeout_s=0.2)
    async with ear:
        ear.push(SILENCE_20MS)
        await fake.wait_until(lambda: bool(fake.sessions) and fake.sessions[0].audio_bytes > 0)
    assert await _collect(ear) == []  # ended, and not reported as a loss
    await fake.wait_until(lambda: "CloseStream" in fake.sessions[0].controls)


async def test_a_dropped_connection_without_reconnects_yields_exactly_one_ear_lost(
    fake: FakeDeepgram,
) -> None:
    async with DeepgramEar(_config(fake), reconnect_attempts=0) as ear:
        ear.push(SILENCE_20MS)
        await fake.wait_until(lambda: bool(fake.sessions) and fake.sessions[0].audio_bytes > 0)
        fake.drop()
        events = await _collect(ear)  # ends once the ear is lost
        ear.push(SILENCE_20MS)  # after the loss: ignored, never raises
    lost = [e for e in events if isinstance(e, EarLost)]
    assert len(lost) == 1
    assert "dropped" in lost[0].reason


async def test_a_refused_key_yields_ear_lost_with_a_clear_reason(fake: FakeDeepgram) -> None:
    async with DeepgramEar(_config(fake, key="wrong-key")) as ear:
        events = await _collect(ear)
    assert events == [EarLost("deepgram rejected the credentials (HTTP 401)")]
    assert fake.rejected_upgrades == 1
    assert "wrong-key" not in repr(_config(fake, key="wrong-key"))


async def test_server_idle_timeout_without_keepalive_or_reconnects_loses_the_ear() -> None:
    async with FakeDeepgram(idle_timeout_s=0.1) as fake:
        ear = DeepgramEar(_config(fake), keepalive_interval_s=30, reconnect_attempts=0)
        async with ear:
            events = await _collect(ear)
    assert len(events) == 1 and isinstance(events[0], EarLost)
    assert "1011" in events[0].reason and "NET-0001" in events[0].reason


async def test_push_never_blocks_and_drops_the_oldest_frames_when_stalled(
    fake: FakeDeepgram,
) -> None:
    ear = DeepgramEar(_config(fake), max_buffered_frames=5)
    frames = [bytes([i]) * 160 for i in range(20)]
    for frame in frames:  # not connected yet: Deepgram is "stalled"
        ear.push(frame)
    assert ear.dropped_frames == 15
    async with ear:
        await fake.wait_until(lambda: bool(fake.sessions) and fake.sessions[0].audio_bytes >= 800)
    assert bytes(fake.sessions[0].audio) == b"".join(frames[15:])


async def test_finalize_flushes_with_from_finalize(fake: FakeDeepgram) -> None:
    """The fake's Finalize path, driven by the SDK directly (sim/ relies on it)."""
    fake.script_utterance("Press one for sales.", at_audio_s=0.0)
    async with httpx.AsyncClient() as http:
        client = _config(fake).client(http)
        async with client.listen.v1.connect(
            model="nova-3", encoding="mulaw", sample_rate=8000
        ) as conn:
            await conn.send_media(SILENCE_20MS * 10)
            await conn.send_finalize()
            message = await conn.recv()
            await conn.send_close_stream()
    assert isinstance(message, ListenV1Results)
    assert message.from_finalize is True and message.is_final is True
    assert message.channel.alternatives[0].transcript == "Press one for sales."


async def test_batch_transcription_returns_timed_words(fake: FakeDeepgram) -> None:
    fake.script_batch("Thanks for calling Acme.")
    batch = DeepgramBatch(SecretStr(fake.api_key), http_base=fake.http_base)
    words = await batch.transcribe(b"ID3-not-really-mp3", "en")
    assert [(w.text, w.start_s, w.end_s) for w in words] == [
        ("Thanks", 0.0, 0.3),
        ("for", 0.3, 0.6),
        ("calling", 0.6, 0.9),
        ("Acme.", 0.9, 1.2),
    ]
    request = fake.batch_requests[0]
    assert request.body == b"ID3-not-really-mp3"
    assert request.headers["authorization"] == f"Token {fake.api_key}"
    assert {k: v[0] for k, v in request.query.items()} == {
        "model": "nova-3",
        "language": "en",
        "smart_format": "true",
        "punctuate": "true",
        "utterances": "true",
    }


async def test_batch_transcription_with_a_bad_key_raises_non_retryable(fake: FakeDeepgram) -> None:
    with pytest.raises(TranscriptionError) as caught:
        await DeepgramBatch(SecretStr("nope"), http_base=fake.http_base).transcribe(b"x", "en")
    assert caught.value.retryable is False
    assert "401" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
