"""The production `DeepgramEar` (deepgram-sdk) against the sim's Deepgram cutting finals as the
real service does: windows that tile the audio, empty finals in silence, long utterances in
several `is_final` pieces. Every message the sim sends must parse as deepgram-sdk's typed model
with no field the type lacks; the ear must still give one line per utterance, timed at its
first word, and the supervisor must catch a voicemail phrase split over two utterances."""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
from deepgram.listen.v1.types.listen_v1metadata import ListenV1Metadata
from deepgram.listen.v1.types.listen_v1results import ListenV1Results
from deepgram.listen.v1.types.listen_v1speech_started import ListenV1SpeechStarted
from deepgram.listen.v1.types.listen_v1utterance_end import ListenV1UtteranceEnd
from pydantic import SecretStr

from media.call.supervisor import Action, Kind, Supervisor
from media.providers.deepgram_ear import CalleeTranscript, DeepgramConfig, DeepgramEar, EarEvent
from sim.deepgram_rules import model_extras
from sim.deepgram_server import FakeDeepgram
from sim.deepgram_windows import Windows

SILENCE_20MS = b"\xff" * 160
LONG = "Hello, you have reached the front desk of the Grand Hotel, how may I help you today?"
LIVE_TYPES: dict[str, type[pydantic.BaseModel]] = {
    "Results": ListenV1Results,
    "Metadata": ListenV1Metadata,
    "SpeechStarted": ListenV1SpeechStarted,
    "UtteranceEnd": ListenV1UtteranceEnd,
}

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDeepgram]:
    async with FakeDeepgram(windows=Windows(silence_s=2.0, piece_words=5)) as fake:
        yield fake


def _config(fake: FakeDeepgram) -> DeepgramConfig:
    return DeepgramConfig(
        api_key=SecretStr(fake.api_key), http_base=fake.http_base, ws_base=fake.ws_base
    )


def _received(fake: FakeDeepgram, audio_bytes: int) -> bool:
    return bool(fake.sessions) and fake.sessions[0].audio_bytes >= audio_bytes


async def _feed(ear: DeepgramEar, fake: FakeDeepgram, seconds: float) -> None:
    """Silence in 0.5 s bursts, each taken in before the next (the audio clock is exact)."""
    base = fake.sessions[0].audio_bytes if fake.sessions else 0
    for burst in range(1, round(seconds * 2) + 1):
        for _ in range(25):
            ear.push(SILENCE_20MS)
        await fake.wait_until(functools.partial(_received, fake, base + burst * 25 * 160))


async def _run(fake: FakeDeepgram, seconds: float) -> list[EarEvent]:
    """Feed `seconds` of audio, close the stream and return every event the ear gave."""
    ear = DeepgramEar(_config(fake))
    async with ear:
        await _feed(ear, fake, seconds)
    events: list[EarEvent] = []
    async with asyncio.timeout(10):
        events = [event async for event in ear.events()]
    return events


def _finals(fake: FakeDeepgram) -> list[dict[str, Any]]:
    return [m for m in fake.sessions[0].sent_of("Results") if m["is_final"]]


@pytest.mark.parametrize("windows", [None, Windows()], ids=["tidy", "windows"])
async def test_every_live_message_is_a_typed_sdk_model_with_no_extra_fields(
    windows: Windows | None,
) -> None:
    async with FakeDeepgram(windows=windows) as fake:
        fake.script_utterance(LONG, at_audio_s=3.0)
        await _run(fake, 12.0)
        sent = fake.sessions[0].sent
    assert {m["type"] for m in sent} == set(LIVE_TYPES)
    for message in sent:
        parsed = LIVE_TYPES[message["type"]].model_validate(message)
        assert model_extras(parsed) == [], message


async def test_finals_tile_the_audio_with_empty_ones_in_silence(fake: FakeDeepgram) -> None:
    fake.script_utterance(LONG, at_audio_s=5.0)  # 17 words of 0.3 s: 5.0 → 10.1
    await _run(fake, 14.0)

    finals = _finals(fake)
    assert finals[0]["start"] == 0.0
    for before, after in itertools.pairwise(finals):
        assert after["start"] == pytest.approx(before["start"] + before["duration"])
    texts = [m["channel"]["alternatives"][0]["transcript"] for m in finals]
    assert texts[:2] == ["", ""]  # 0-2 s and 2-4 s of silence
    spoken = [m for m in finals if m["channel"]["alternatives"][0]["transcript"]]
    assert len(spoken) == 4  # 17 words, five a piece
    assert spoken[0]["start"] == 4.0  # the window holds the second of silence before the words
    assert [m["speech_final"] for m in spoken] == [False, False, False, True]
    assert " ".join(t for t in texts if t) == LONG


async def test_the_ear_gives_one_line_per_utterance_at_its_first_word(fake: FakeDeepgram) -> None:
    fake.script_utterance(LONG, at_audio_s=5.0)
    events = await _run(fake, 14.0)

    lines = [e for e in events if isinstance(e, CalleeTranscript) and e.is_final]
    assert [line.text for line in lines] == [LONG]
    assert (lines[0].start_s, lines[0].end_s) == pytest.approx((5.0, 10.1))
    assert len(lines[0].words) == len(LONG.split())
    assert all(e.text for e in events if isinstance(e, CalleeTranscript))


async def test_close_flushes_the_unfinished_pieces_as_one_line(fake: FakeDeepgram) -> None:
    fake.script_utterance(LONG, at_audio_s=1.0)
    events = await _run(fake, 4.5)  # two pieces are out, the rest is mid-speech

    assert len([m for m in _finals(fake) if m["channel"]["alternatives"][0]["words"]]) == 3
    lines = [e for e in events if isinstance(e, CalleeTranscript) and e.is_final]
    assert [line.text for line in lines] == [LONG]
    assert lines[0].start_s == pytest.approx(1.0)


async def test_a_voicemail_phrase_split_over_two_utterances_is_caught_once(
    fake: FakeDeepgram,
) -> None:
    fake.script_utterance("Hi, this is Sam. Please leave a", at_audio_s=1.0)
    fake.script_utterance("message after the tone.", at_audio_s=4.0)
    events = await _run(fake, 8.0)

    lines = [e for e in events if isinstance(e, CalleeTranscript) and e.is_final]
    assert [line.text for line in lines] == [
        "Hi, this is Sam. Please leave a",
        "message after the tone.",
    ]
    assert [line.start_s for line in lines] == pytest.approx([1.0, 4.0])
    supervisor = Supervisor()
    decisions = [d for line in lines for d in supervisor.on_callee_final(line.text, line.end_s)]
    assert [(d.kind, d.action) for d in decisions] == [(Kind.VOICEMAIL, Action.LEAVE_MESSAGE)]
