"""The Gemini stand-in's token meter: Google's documented rates, per-turn counts."""

from __future__ import annotations

import json

from sim import live_schema
from sim.live_usage import UsageMeter, audio_tokens, text_tokens


def test_rates_are_googles_32_tokens_a_second_and_4_characters_a_token() -> None:
    assert audio_tokens(60) == 1920  # "one minute of audio is 1,920 tokens"
    assert audio_tokens(0.02 * 50) == 32  # fifty 20 ms chunks are one second, not 33 tokens
    assert text_tokens("The quick brown fox jumps over the lazy dog.") == 11
    assert text_tokens("  ") == 0


def test_each_turn_bills_the_context_read_and_its_own_audio() -> None:
    meter = UsageMeter()
    meter.heard_text("x" * 400)  # system instruction and tools: 100 tokens
    meter.heard_audio(2.0)
    first = meter.turn(1.5)
    meter.heard_audio(1.0)
    second = meter.turn(0.5)

    assert first == {
        "promptTokenCount": 164,
        "responseTokenCount": 48,
        "totalTokenCount": 212,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 100},
            {"modality": "AUDIO", "tokenCount": 64},
        ],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 48}],
    }
    # Not a running total: the prompt is the context, which now holds the first answer.
    assert second["promptTokenCount"] == 100 + 64 + 48 + 32
    assert second["responseTokenCount"] == 16
    assert meter.billed_total == first["totalTokenCount"] + second["totalTokenCount"]
    for usage in (first, second):
        assert live_schema.server_frame_errors(json.dumps({"usageMetadata": usage})) is None
