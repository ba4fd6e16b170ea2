"""What was really audible on a call, on the recording's clock: the answer key for the
post-call merged transcript.

The world knows where each line's audio sits in the recording: a venue line from the tick
its first frame went out, an agent line from the tick the callee started hearing it. A
line the callee barged into was heard only for `heard_s`, so only the words that had
started by then count (and the recording's words, `sim.carrier.recording_words`, follow
the same rule). Lines never heard (no `recording_s`) are not turns.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from sim.voice import WordTiming
from sim.world import Conversation, Line

Speaker = Literal["agent", "callee"]


@dataclasses.dataclass(frozen=True, slots=True)
class TrueTurn:
    """One audible line: who, from when to when (ms into the recording), and its words."""

    speaker: Speaker
    start_ms: int
    end_ms: int
    text: str


def audible_words(line: Line) -> list[WordTiming]:
    """The words of `line` that were heard, timed from the line's start; a barged-into
    line's last word ends where the callee stopped hearing it."""
    cut = line.heard_s if line.interrupted else None
    words: list[WordTiming] = []
    for token, start, end in line.words:
        if cut is not None and start >= cut:
            break
        words.append((token, start, end if cut is None else min(end, cut)))
    return words


def true_turns(conv: Conversation) -> list[TrueTurn]:
    """Every line that was audible, in order of its start on the recording."""
    turns: list[TrueTurn] = []
    for line in conv.lines:
        if line.recording_s is None:
            continue
        words = audible_words(line)
        if not words:
            continue
        turns.append(
            TrueTurn(
                "agent" if line.speaker == "agent" else "callee",
                round((line.recording_s + words[0][1]) * 1000),
                round((line.recording_s + words[-1][2]) * 1000),
                " ".join(token for token, _, _ in words),
            )
        )
    return sorted(turns, key=lambda t: t.start_ms)
