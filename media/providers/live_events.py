"""What a Gemini Live session reports: the typed events of `GeminiLiveSession.events()`.

Plain frozen dataclasses, so the bridge, its tests and the fast wire path share one vocabulary
without importing the SDK's message types.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class AudioOut:
    """Model speech: PCM16 mono 24 kHz, arbitrary chunk size."""

    pcm24k: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class InputTranscript:
    """A piece of Gemini's transcription of the other side (coarse; Deepgram is the precise
    ear). The Live API marks no end of utterance: the bridge ends a line on turn events."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class OutputTranscript:
    """What the model is saying, as text, in pieces that concatenate (no end marker: the
    line ends with the model's turn)."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Interrupted:
    """The other side barged in: drop unplayed model audio now."""


@dataclasses.dataclass(frozen=True, slots=True)
class TurnComplete:
    """The model's turn is over (also after an interruption)."""


@dataclasses.dataclass(frozen=True, slots=True)
class GenerationComplete:
    """The model generated its whole turn; playback may still be catching up."""


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCall:
    """The model called one of `agent_tools()`; answer with `send_tool_response(id, ...)`."""

    id: str
    name: str
    args: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCallCancelled:
    """The model withdrew these tool calls (e.g. after a barge-in); do not answer them."""

    ids: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Resumed:
    """The connection was replaced and the conversation resumed after `gap_ms` of silence."""

    gap_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class TokensUsed:
    """One `usageMetadata`: the tokens of one model turn (per turn, not a running total;
    a later turn's prompt counts the conversation again, and is billed again).

    `input`/`output` are the totals (prompt + tool-use prompt, response + thoughts); the
    `*_audio`/`*_text` counts are the modality breakdown, where the API gave one.
    """

    input: int
    output: int
    input_audio: int = 0
    input_text: int = 0
    output_audio: int = 0
    output_text: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class SessionLost:
    """The conversation is gone for good; `reason` is safe to log."""

    reason: str


LiveEvent = (
    AudioOut
    | InputTranscript
    | OutputTranscript
    | Interrupted
    | TurnComplete
    | GenerationComplete
    | ToolCall
    | ToolCallCancelled
    | Resumed
    | TokensUsed
    | SessionLost
)
