"""Provider usage as media counts it: Gemini's per-turn `usageMetadata` summed over the call
(across a resumed connection), the ear's audio counted once it is handed over, and the
running totals core is sent (which only grow, so a repeat cannot double count)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from google.genai import types

from media.call.inbound import EarBacklog, EarFeed
from media.call.usage import CallUsage
from media.providers.live_events import TokensUsed, TurnComplete
from media.providers.live_translator import LiveTranslator


def parsed(frame: dict[str, Any]) -> types.LiveServerMessage:
    """The frame as google-genai's `AsyncSession.receive()` hands it over."""
    return types.LiveServerMessage._from_response(response=frame, kwargs={})


def turn_usage(prompt: int, response: int, audio_in: int, audio_out: int) -> dict[str, Any]:
    return {
        "serverContent": {"turnComplete": True},
        "usageMetadata": {
            "promptTokenCount": prompt,
            "responseTokenCount": response,
            "totalTokenCount": prompt + response,
            "promptTokensDetails": [
                {"modality": "AUDIO", "tokenCount": audio_in},
                {"modality": "TEXT", "tokenCount": prompt - audio_in},
            ],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": audio_out}],
        },
    }


def test_usage_metadata_becomes_one_event_after_the_turn_events() -> None:
    events = LiveTranslator().translate(parsed(turn_usage(143, 19, 120, 19)))
    assert events == [
        TurnComplete(),
        TokensUsed(
            input=143, output=19, input_audio=120, input_text=23, output_audio=19, output_text=0
        ),
    ]


def test_tool_use_prompt_and_thoughts_count_with_input_and_output() -> None:
    frame = {
        "usageMetadata": {
            "promptTokenCount": 100,
            "toolUsePromptTokenCount": 7,
            "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}],
            "responseTokenCount": 10,
            "thoughtsTokenCount": 4,
        }
    }
    (event,) = LiveTranslator().translate(parsed(frame))
    assert event == TokensUsed(input=107, output=14, input_text=7)


def test_a_frame_without_usage_reports_none() -> None:
    events = LiveTranslator().translate(parsed({"serverContent": {"turnComplete": True}}))
    assert not any(isinstance(e, TokensUsed) for e in events)


def test_per_turn_usage_is_summed_across_turns_and_a_resumed_connection() -> None:
    # Live reports each turn's own tokens; the prompt grows because each turn re-reads the
    # conversation (and is billed for it). A resumed connection goes on reporting per turn.
    usage = CallUsage()
    first, resumed = LiveTranslator(), LiveTranslator()
    frames = [
        (first, turn_usage(143, 19, 120, 19)),
        (first, turn_usage(181, 24, 150, 24)),
        (resumed, turn_usage(224, 24, 190, 24)),
    ]
    seen = []
    for translator, frame in frames:
        for event in translator.translate(parsed(frame)):
            if isinstance(event, TokensUsed):
                usage.add_tokens(event)
                seen.append(usage.totals())
    totals = usage.totals()
    assert totals.gemini_input_tokens == 143 + 181 + 224
    assert totals.gemini_output_tokens == 19 + 24 + 24
    assert totals.gemini_input_audio_tokens == 120 + 150 + 190
    assert totals.gemini_input_text_tokens == 23 + 31 + 34
    assert totals.gemini_output_audio_tokens == 67
    # Every report is a running total: each is at least the one before, field by field.
    for earlier, later in itertools.pairwise(seen):
        pairs = zip(dataclasses.astuple(earlier), dataclasses.astuple(later), strict=True)
        assert all(a <= b for a, b in pairs)


class Ear:
    def __init__(self) -> None:
        self.heard = bytearray()

    def push(self, mulaw: bytes) -> None:
        self.heard += mulaw


def test_ear_seconds_count_what_the_ear_was_handed_not_what_the_backlog_dropped() -> None:
    usage = CallUsage()
    feed = EarFeed(usage.add_ear_audio, EarBacklog(max_bytes=8000, chunk_bytes=800))
    for _ in range(75):  # 1.5 s before the ear exists; the backlog keeps the newest 1 s
        feed.push(b"\xff" * 160)
    assert usage.totals().deepgram_live_ms == 0
    ear = Ear()
    feed.start(ear)
    for _ in range(100):  # 2 s streamed live
        feed.push(b"\xff" * 160)
    assert len(ear.heard) == 8000 + 16000
    assert usage.totals().deepgram_live_ms == 3000
    assert feed.shift_ms == 500


def test_without_an_ear_nothing_is_counted() -> None:
    usage = CallUsage()
    feed = EarFeed(usage.add_ear_audio)
    feed.push(b"\xff" * 160)
    feed.start(None)
    feed.push(b"\xff" * 160)
    assert usage.totals().deepgram_live_ms == 0


def test_totals_fall_due_every_interval_while_they_change() -> None:
    usage = CallUsage(report_every_s=30)
    usage.add_ear_audio(b"\xff" * 800)
    first = usage.due(1000.0)
    assert first is not None and first.deepgram_live_ms == 100
    usage.add_ear_audio(b"\xff" * 800)
    assert usage.due(1029.0) is None  # too soon
    later = usage.due(1030.0)
    assert later is not None and later.deepgram_live_ms == 200
    assert usage.due(2000.0) is None  # nothing new to say
