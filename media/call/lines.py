"""Gemini's transcription pieces of one call, joined into one line per utterance.

The Live API's transcriptions carry only text: nothing marks where an utterance ends (there
is no `finished`), so a line ends on what ends a turn.

- The agent's line ends with its turn: `turnComplete`, which also follows an `interrupted`
  (pieces between the two still transcribe the turn, so they join its line). If that never
  comes, the line ends when the model starts its next turn, or after `silence_s` without a
  piece once the turn was interrupted or fully generated.
- The callee's line ends when the model starts answering (its first audio or output piece of
  a turn), at `generationComplete`, at `interrupted` (what was pending came before the
  barge-in), at a `turnComplete` that was not an interruption's, or after `silence_s` without
  a piece. After a barge-in the callee's new words wait for the model's answer or a silence,
  so a line is not split at the bare `turnComplete` in the middle of them.
- Both end when the connection is replaced and when the call ends.

Pure: no I/O and no clock of its own; `media.call.bridge` feeds it and reports the lines.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Who = Literal["agent", "callee"]


@dataclasses.dataclass(frozen=True, slots=True)
class Line:
    """One utterance: `at_ms` is the call clock at its first piece; `turn` (agent lines) is
    the playout turn that was current then, since transcription trails its audio."""

    who: Who
    text: str
    at_ms: int
    turn: int = 0


@dataclasses.dataclass(slots=True)
class _Pending:
    parts: list[str] = dataclasses.field(default_factory=list)
    at_ms: int = 0
    turn: int = 0
    last: float = 0.0  # monotonic time of the newest piece


class GeminiLines:
    """The flush rules of the module docstring; every method returns the lines it ended."""

    def __init__(self, silence_s: float = 1.5) -> None:
        self.silence_s = silence_s
        self._agent = _Pending()
        self._callee = _Pending()
        self._answering = False  # the model's current turn has produced output
        self._winding_down = False  # the turn was interrupted or fully generated
        self._interrupted = False

    def heard(self, text: str, at_ms: int, now: float) -> None:
        """A piece of the callee's words (input transcription)."""
        _add(self._callee, text, at_ms, 0, now)

    def said(self, text: str, at_ms: int, turn: int, now: float) -> list[Line]:
        """A piece of the agent's words (output transcription)."""
        # Late pieces of a cut or fully generated turn still belong to it: only audio (or a
        # first piece) starts a new turn.
        ended = [] if self._answering else self.model_started()
        _add(self._agent, text, at_ms, turn, now)
        return ended

    def model_started(self) -> list[Line]:
        """The first model audio since a turn ended or was cut: a new turn begins."""
        if self._answering and not self._winding_down:
            return []
        ended = self._end("agent") if self._winding_down else []
        self._answering, self._winding_down, self._interrupted = True, False, False
        return ended + self._end("callee")

    def generation_complete(self) -> list[Line]:
        self._winding_down = True
        return self._end("callee")

    def interrupted(self) -> list[Line]:
        self._winding_down = self._interrupted = True
        return self._end("callee")

    def turn_complete(self) -> list[Line]:
        ended = self._end("agent")
        if not self._interrupted:
            ended += self._end("callee")
        self._answering = self._winding_down = self._interrupted = False
        return ended

    def tick(self, now: float) -> list[Line]:
        """Lines that a silence ended (call about every quarter second)."""
        ended: list[Line] = []
        if self._winding_down and _quiet(self._agent, now, self.silence_s):
            ended += self._end("agent")
        if _quiet(self._callee, now, self.silence_s):
            ended += self._end("callee")
        return ended

    def close(self) -> list[Line]:
        """Everything still open (the connection was replaced or the call is over)."""
        ended = self._end("agent") + self._end("callee")
        self._answering = self._winding_down = self._interrupted = False
        return sorted(ended, key=lambda line: line.at_ms)

    def _end(self, who: Who) -> list[Line]:
        pending = self._agent if who == "agent" else self._callee
        text = "".join(pending.parts).strip()
        pending.parts.clear()
        return [Line(who, text, pending.at_ms, pending.turn)] if text else []


def _add(pending: _Pending, text: str, at_ms: int, turn: int, now: float) -> None:
    if not pending.parts:
        pending.at_ms, pending.turn = at_ms, turn
    pending.parts.append(text)
    pending.last = now


def _quiet(pending: _Pending, now: float, silence_s: float) -> bool:
    return bool(pending.parts) and now - pending.last >= silence_s
