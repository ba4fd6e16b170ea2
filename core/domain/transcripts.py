"""The merged transcript in its degraded form: one timeline built from the live lines alone.

The real merge (the bot-only recording → Deepgram batch word timings → calibrated against
the bot's send times) is `core.domain.transcript_merge`. When it cannot run (no recording,
Deepgram keeps failing, nothing calibrates), a finished call's transcript is assembled
from the final lines media reported during the call. Those lines carry only a start
(`offset_ms`, counted from the call's first media stream), so every end is an estimate
and the result says so: `degraded: true`, `merge: "live_only"`, `calibration_delta_ms:
None`, no `words`.

Media reports each callee utterance once: from our own Deepgram ear (`supervisor_stt`)
while it works, and from Gemini's input transcription (`gemini`) only after the ear was
lost (or when there is none), so every stored callee line is kept. Calls recorded before
that rule carry both copies, interleaved; for them a Gemini callee line that arrived
before the ear's last line is dropped (the ear was still listening, so it has its own copy).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

VERSION = 1
MERGE_LIVE_ONLY = "live_only"

AGENT = "agent"
CALLEE = "callee"
EAR = "supervisor_stt"
GEMINI = "gemini"
LIVE_AGENT = "live_agent"

# Conversational speech runs at about 2.5–3 words a second. The fast end keeps estimated
# ends short, so a turn is flagged as overlapping only when its text clearly cannot fit
# before the other party started.
WORDS_PER_SEC = 3.0


@dataclasses.dataclass(frozen=True, slots=True)
class TimedWord:
    """One word the callee heard, timed by the recording (only the recording merge has them)."""

    word: str
    start_ms: int
    end_ms: int
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "word": self.word,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "confidence": self.confidence,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Turn:
    """One speaker's line on the merged timeline, in ms: from the first media stream here,
    from the recording's start in the recording merge."""

    speaker: str
    start_ms: int
    end_ms: int
    text: str
    source: str
    overlap_with_next: bool = False
    words: tuple[TimedWord, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "speaker": self.speaker,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "text": self.text,
            "source": self.source,
        }
        if self.words:
            body["words"] = [word.as_dict() for word in self.words]
        if self.overlap_with_next:
            body["overlap_with_next"] = True
        return body


def spoken_ms(text: str) -> int:
    """How long saying `text` takes at WORDS_PER_SEC (at least one word's worth)."""
    words = max(1, len(text.split()))
    return math.ceil(words * 1000 / WORDS_PER_SEC)


def kept_lines(lines: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The final, non-empty lines (in arrival order), without the Gemini callee lines that
    arrived while the ear was still transcribing (before its last line): those are copies.
    Gemini's lines after the ear's last one (the ear was lost) are the callee's only record."""
    final = [ln for ln in lines if ln.get("final", True) and str(ln.get("text") or "").strip()]
    ear_last = max(
        (
            i
            for i, ln in enumerate(final)
            if ln.get("speaker") == CALLEE and ln.get("source") == EAR
        ),
        default=-1,
    )
    return [
        ln
        for i, ln in enumerate(final)
        if not (i < ear_last and ln.get("speaker") == CALLEE and ln.get("source") == GEMINI)
    ]


def _source(line: Mapping[str, Any]) -> str:
    if line.get("speaker") == AGENT:
        return LIVE_AGENT
    return str(line.get("source") or "")


def merge_live(lines: Sequence[Mapping[str, Any]], duration_sec: float | None) -> dict[str, Any]:
    """The degraded merged transcript of a finished call from its stored final lines.

    Turns are ordered by start (ties keep the order the lines arrived in). A turn's end is
    its start plus the time its words take to say (`spoken_ms`), cut at the next turn's
    start, or for the last turn at the call's end, and never before its own start. When
    the words need longer than the gap before the *other* party's next turn, the two
    probably talked over each other: the turn gets `overlap_with_next: true` (its end
    still stops at the next start, which is the only time we actually know).
    """
    duration_ms = None if duration_sec is None else round(duration_sec * 1000)
    picked = sorted(
        enumerate(kept_lines(lines)), key=lambda item: (int(item[1].get("offset_ms") or 0), item[0])
    )
    ordered = [line for _, line in picked]
    turns: list[Turn] = []
    for index, line in enumerate(ordered):
        start = int(line.get("offset_ms") or 0)
        text = str(line["text"]).strip()
        speaker = str(line.get("speaker") or "")
        said_until = start + spoken_ms(text)
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        overlap = False
        if following is not None:
            next_start = int(following.get("offset_ms") or 0)
            end = min(said_until, next_start)
            overlap = following.get("speaker") != speaker and said_until > next_start
        elif duration_ms is not None:
            end = min(said_until, duration_ms)
        else:
            end = said_until
        turns.append(Turn(speaker, start, max(start, end), text, _source(line), overlap))
    return {
        "version": VERSION,
        "merge": MERGE_LIVE_ONLY,
        "degraded": True,
        "duration_ms": duration_ms,
        "calibration_delta_ms": None,
        "turns": [turn.as_dict() for turn in turns],
    }
