"""What the simulated Deepgram is told to hear, and what one live connection exchanged.

`ScriptedUtterance` places a callee's words on a session's audio clock (bytes of μ-law / 8000);
a `TranscriptSource` supplies them per session (the simulated world), `ListenSession` records
the handshake, the audio, the control messages, what was sent back and any protocol violation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection

from sim.deepgram_windows import WindowState

MULAW_BYTES_PER_S = 8000


@dataclasses.dataclass(slots=True)
class ScriptedUtterance:
    """What the callee "says", positioned on the audio clock.

    Words last `word_s` each, back to back, unless `timings` gives each token's own
    (start, end) in seconds after `at_audio_s`. `key` identifies it across calls of a
    `TranscriptSource` (default: its position in the list). A recording's words also carry
    the recording's length, `audio_s` (batch `metadata.duration`), when it is known.
    """

    text: str
    at_audio_s: float
    word_s: float
    timings: tuple[tuple[float, float], ...] | None = None
    key: object = None
    audio_s: float | None = None
    # Every word's dict, built once: the live server asks for them on each audio frame.
    _words: list[dict[str, Any]] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def tokens(self) -> list[str]:
        return self.text.split()

    def _span(self, i: int) -> tuple[float, float]:
        if self.timings is not None and i < len(self.timings):
            start, end = self.timings[i]
            return self.at_audio_s + start, self.at_audio_s + end
        start = self.at_audio_s + i * self.word_s
        return start, start + self.word_s

    def word_end_s(self, count: int) -> float:
        """When the first `count` words have been spoken."""
        return round(self._span(count - 1)[1], 3) if count > 0 else self.at_audio_s

    def word_dicts(self, count: int | None = None) -> list[dict[str, Any]]:
        """The first `count` (default: all) words as Deepgram's word objects; fresh copies,
        so a caller may change them."""
        if self._words is None:
            self._words = [
                {
                    "word": token.strip('.,!?;:«»"').lower(),
                    "start": round(start, 3),
                    "end": round(end, 3),
                    "confidence": 0.98,
                    "punctuated_word": token,
                }
                for i, token in enumerate(self.tokens)
                for start, end in (self._span(i),)
            ]
        return [dict(word) for word in self._words[:count]]

    @property
    def end_s(self) -> float:
        return self.word_end_s(len(self.tokens))


@dataclasses.dataclass(slots=True)
class ListenSession:
    """Everything one live connection sent and received, for assertions."""

    query: dict[str, list[str]]
    headers: dict[str, str]
    audio: bytearray = dataclasses.field(default_factory=bytearray, repr=False)
    controls: list[str] = dataclasses.field(default_factory=list)
    sent: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    closed: bool = False
    close_code: int | None = None
    # utterance key → stages already emitted ("started", "interim", "final", "end")
    progress: dict[object, set[str]] = dataclasses.field(default_factory=dict)
    connection: ServerConnection | None = dataclasses.field(default=None, repr=False)
    context: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    last_message_s: float = dataclasses.field(default=0.0, repr=False)  # on the server's clock
    windows: WindowState = dataclasses.field(default_factory=WindowState, repr=False)

    @property
    def params(self) -> dict[str, str]:
        return {k: v[-1] for k, v in self.query.items()}

    @property
    def audio_bytes(self) -> int:
        return len(self.audio)

    @property
    def audio_s(self) -> float:
        return len(self.audio) / MULAW_BYTES_PER_S

    @property
    def keepalives(self) -> int:
        return self.controls.count("KeepAlive")

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == kind]


class TranscriptSource(Protocol):
    """Where a world-driven Deepgram learns what was said (instead of `script_utterance`)."""

    def live(self, session: ListenSession) -> Sequence[ScriptedUtterance]:
        """The callee's utterances on this session's audio clock, so far (may grow)."""
        ...

    def batch(self, body: bytes) -> ScriptedUtterance | None:
        """The words of a recording posted for batch transcription, if it is known."""
        ...
