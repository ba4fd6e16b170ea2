"""What the Gemini stand-in bills: `usageMetadata` counted from what was really heard and said.

Google documents audio at 32 tokens per second and text at about 4 characters a token (100
tokens ≈ 60–80 English words). A Live session reports usage with each finished model turn, and
the counts are per turn, not running totals: `promptTokenCount` is the whole context the model
read for that turn (system instruction and tools, every second of caller audio, every earlier
model turn, text turns and tool answers), so it grows turn by turn (googleapis/python-genai
#1342, #1917: a bare "Hi" already costs the system instruction), while `responseTokenCount` is
only what this turn generated. Both come split by modality in `*TokensDetails`. One meter per
logical session, so a resumed connection goes on from the context it left.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

AUDIO_TOKENS_PER_S = 32
CHARS_PER_TOKEN = 4


def text_tokens(text: str) -> int:
    """Tokens for `text` at ~4 characters a token (a word or more is at least one)."""
    return math.ceil(len(text.strip()) / CHARS_PER_TOKEN)


def audio_tokens(seconds: float) -> int:
    return math.ceil(round(seconds * AUDIO_TOKENS_PER_S, 6))  # no float dust: 1.0000001 s


@dataclasses.dataclass(slots=True)
class UsageMeter:
    """The context of one Live session in tokens, by modality, and the turns it billed."""

    context_text: int = 0
    context_audio: int = 0
    audio_heard_s: float = 0.0
    turns: int = 0
    billed_total: int = 0

    def heard_audio(self, seconds: float) -> None:
        """Caller audio joins the context (rounded per second heard, not per chunk)."""
        self.audio_heard_s += seconds
        self.context_audio = audio_tokens(self.audio_heard_s)

    def heard_text(self, text: str) -> None:
        """Setup, text turns and tool answers join the context as text."""
        self.context_text += text_tokens(text)

    def turn(self, audio_s: float) -> dict[str, Any]:
        """`usageMetadata` for a model turn of `audio_s` of speech; the turn then joins the
        context (as audio: native-audio models keep their own speech, not its transcript)."""
        response_audio = audio_tokens(audio_s)
        prompt = self.context_text + self.context_audio
        prompt_details = [
            {"modality": "TEXT", "tokenCount": self.context_text},
            {"modality": "AUDIO", "tokenCount": self.context_audio},
        ]
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "responseTokenCount": response_audio,
            "totalTokenCount": prompt + response_audio,
            "promptTokensDetails": [d for d in prompt_details if d["tokenCount"]],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": response_audio}],
        }
        self.heard_audio(audio_s)
        self.turns += 1
        self.billed_total += prompt + response_audio
        return usage
