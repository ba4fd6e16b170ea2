"""The production `DeepgramEar` and `DeepgramBatch` (deepgram-sdk) against the sim's
Deepgram, whose transcripts come from the world: what the venue said, timed on the ear's own
audio clock however late the ear joined the call.

Nothing here waits on the wall clock: audio is fed one frame at a time, each once the server
has the previous one (the audio clock advances exactly as fast as the test pushes), and the
server's idle timeout runs on a `FakeClock` the test advances by hand."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from deepgram.types.listen_v1response import ListenV1Response
from pydantic import SecretStr

from core.adapters.deepgram_batch import DeepgramBatch
from media.providers.deepgram_ear import (
    CalleeTranscript,
    DeepgramConfig,
    DeepgramEar,
    EarEvent,
    SpeechStarted,
    UtteranceEnd,
)
from sim import voice
from sim.deepgram_server import FakeDeepgram
from sim.scenario_files import venue_for
from sim.world import FRAME_BYTES, World, WorldTranscripts

KEY = "sim-deepgram-test-key"
TEXT = "Good evening, Trattoria Roma, how can I help?"

pytestmark = pytest.mark.timeout(30)


class FakeClock:
    """Simulated wall time for the server: `sleep()` returns once `advance()` passes it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._changed = asyncio.Condition()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        until = self.now + seconds
        async with self._changed:
            await self._changed.wait_for(lambda: self.now >= until)

    async def advance(self, seconds: float) -> None:
        async with self._changed:
            self.now += seconds
            self._changed.notify_all()


async def feed(fake: FakeDeepgram, ear: DeepgramEar, audio: bytes) -> None:
    """Push `audio` in 20 ms frames, each once the server has received everything before it
    (the ear drops frames it cannot send in time, so it is never given a backlog)."""
    pushed = 0

    def received() -> bool:
        return bool(fake.sessions) and fake.sessions[-1].audio_bytes >= pushed

    for offset in range(0, len(audio), FRAME_BYTES):
        frame = audio[offset : offset + FRAME_BYTES]
        ear.push(frame)
        pushed += len(frame)
        await fake.wait_until(received)


def config(fake: FakeDeepgram) -> DeepgramConfig:
    return DeepgramConfig(SecretStr(KEY), http_base=fake.http_base, ws_base=fake.ws_base)


def a_call(world: World) -> tuple[bytes, voice.Speech]:
    """A stream as the carrier sends it: 1 s of line noise, the venue's hello, 2 s of noise."""
    conv = world.open("CA-ear", "+15550100", venue_for("+15550100"))
    speech = voice.speak(TEXT, voice.Voice(150.0, word_ms=200), 8000, conv.rng)
    said = voice.line_mulaw(speech.pcm, conv.rng)
    said += voice.noise_mulaw(conv.rng, -len(said) % FRAME_BYTES)
    audio = voice.noise_mulaw(conv.rng, 8000) + said + voice.noise_mulaw(conv.rng, 16000)
    for offset in range(0, len(audio), FRAME_BYTES):
        world.index.register(conv, 0, offset, audio[offset : offset + FRAME_BYTES])
    line = conv.new_line("venue", "greeting", TEXT, "en", {}, speech.words, speech.duration_s)
    line.stream_no, line.stream_offset = 0, 8000
    conv.add(line)
    return audio, speech


async def test_the_ear_hears_the_venue_on_its_own_clock() -> None:
    world = World()
    audio, speech = a_call(world)
    events: list[EarEvent] = []
    async with FakeDeepgram(KEY, source=WorldTranscripts(world)) as fake:
        ear = DeepgramEar(config(fake))
        async with ear:
            await feed(fake, ear, audio[4000:])  # the ear joined half a second late
            async for event in ear.events():
                events.append(event)
                if isinstance(event, UtteranceEnd):
                    break
    started = [e for e in events if isinstance(e, SpeechStarted)]
    finals = [e for e in events if isinstance(e, CalleeTranscript) and e.is_final]
    interims = [e for e in events if isinstance(e, CalleeTranscript) and not e.is_final]
    assert [e.timestamp for e in started] == [0.5]
    assert len(finals) == 1 and finals[0].text == TEXT and finals[0].speech_final
    assert interims and TEXT.startswith(interims[0].text)
    expected = [(w, round(0.5 + s, 3), round(0.5 + e, 3)) for w, s, e in speech.words]
    assert finals[0].words == expected
    assert finals[0].start_s == 0.5


async def test_unknown_audio_gets_no_transcript() -> None:
    world = World()
    a_call(world)
    stranger = voice.noise_mulaw(np.random.default_rng(7), 24000)
    async with FakeDeepgram(KEY, source=WorldTranscripts(world)) as fake:
        ear = DeepgramEar(config(fake))
        async with ear:
            await feed(fake, ear, stranger)
        assert fake.sessions[0].audio_s == 3
        results = fake.sessions[0].sent_of("Results")
    assert [r["channel"]["alternatives"][0]["transcript"] for r in results] == [""]  # silence


async def test_an_idle_stream_is_closed_on_the_servers_clock() -> None:
    clock = FakeClock()
    async with FakeDeepgram(KEY, idle_timeout_s=10.0, clock=clock.time, sleep=clock.sleep) as fake:
        ear = DeepgramEar(config(fake))
        async with ear:
            await feed(fake, ear, voice.noise_mulaw(np.random.default_rng(7), FRAME_BYTES))
            await clock.advance(10.0)  # ten simulated seconds without a message
            await fake.wait_until(lambda: fake.sessions[0].closed)
        assert fake.sessions[0].close_code == 1011


async def test_batch_transcribes_a_known_recording() -> None:
    world = World()
    words = [("Hello,", 0.25, 0.5), ("this", 0.6, 0.8), ("is", 0.85, 0.95), ("Anna.", 1.0, 1.3)]
    world.add_recording(b"RIFF....WAVEfmt recording bytes", words)
    async with FakeDeepgram(KEY, source=WorldTranscripts(world)) as fake:
        batch = DeepgramBatch(SecretStr(KEY), http_base=fake.http_base)
        found = await batch.transcribe(b"RIFF....WAVEfmt recording bytes", "en")
        unknown = await batch.transcribe(b"RIFF other", "en")
    assert [(w.text, w.start_s, w.end_s) for w in found] == words
    assert unknown == []


async def test_batch_utterances_split_at_pauses_with_their_true_starts() -> None:
    world = World()
    words = [
        ("Hello,", 0.25, 0.5),
        ("Anna.", 0.6, 1.0),  # 0.9 s of silence follows: a new utterance
        ("Table", 1.9, 2.2),
        ("for", 2.3, 2.4),  # 0.6 s: the same one by default, a new one at utt_split=0.5
        ("four.", 3.0, 3.4),
    ]
    media = b"ID3 a known recording"
    world.add_recording(media, words, duration_s=5.12)
    async with (
        FakeDeepgram(KEY, source=WorldTranscripts(world)) as fake,
        httpx.AsyncClient() as http,
    ):
        media_api = config(fake).client(http).listen.v1.media
        default = await media_api.transcribe_file(request=media, utterances=True)
        finer = await media_api.transcribe_file(request=media, utterances=True, utt_split=0.5)
        unsplit = await media_api.transcribe_file(request=media)
    assert isinstance(default, ListenV1Response) and isinstance(finer, ListenV1Response)
    utterances = default.results.utterances or []
    assert [(u.start, u.end, u.transcript) for u in utterances] == [
        (0.25, 1.0, "Hello, Anna."),
        (1.9, 3.4, "Table for four."),
    ]
    assert [[w.word for w in u.words or []] for u in utterances] == [
        ["hello", "anna"],
        ["table", "for", "four"],
    ]
    assert all(u.channel == 0 and u.confidence == 0.98 for u in utterances)
    assert len({u.id for u in utterances}) == 2
    assert [u.start for u in finer.results.utterances or []] == [0.25, 1.9, 3.0]
    assert default.metadata.duration == 5.12  # the audio's length, not the last word's end
    assert isinstance(unsplit, ListenV1Response) and unsplit.results.utterances is None
