"""The merged transcript proper: the bot's recorded words and the callee's live lines as one.

The live agent lines say what Gemini meant to say and roughly when the callee began to hear
it (media clock: ms since the call's first media stream). The bot-only recording, through
Deepgram batch, says what the callee actually heard and exactly when, but on the
recording's own clock. Calibration finds `delta` (recording = media + delta) from the agent
lines; the callee's live lines are then shifted onto the recording clock.

Against the live-only merge (`transcripts.merge_live`, version 1) this one is version 2,
`merge: "recording"`, `degraded: false`: times count from the recording's start,
`calibration_delta_ms` maps them back to the media clock, agent turns are measured (start
= first word, end = last word, text = the heard words, so cut short at a barge-in, with
`words`), an agent end may pass the next turn's start (`overlap_with_next`), and only
callee ends are estimates. When nothing calibrates, `merge_recording` returns None and the
caller serves `merge_live` instead.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from core.domain import transcripts

VERSION = 2
MERGE_RECORDING = "recording"
BATCH = "deepgram_batch"

# A pause this long on the bot-only track starts a new stretch of speech (a segment);
# an agent utterance almost always begins one.
SEGMENT_GAP_MS = 500
# How far a calibrated agent line may sit from its first word: the send-time jitter (tested
# at ±120 ms; boundaries start to slip past about ±200 ms) plus the calibration's own error.
TOLERANCE_MS = 300
# Within the tolerance, an utterance starts at a word after at least this much silence;
# shorter pauses are inside a sentence.
ANCHOR_GAP_MS = 200
# With no pause at a line's calibrated start (said right after the previous line), at least
# this many of its first PREFIX_WORDS words must be heard in place for the line to start there.
BACK_TO_BACK_WORDS = 2
# The recording and the media stream both start within seconds of the answer; bounding the
# search keeps the candidate pairs linear in the call's length.
MAX_DELTA_MS = 120_000
# How many of the best-counted offsets get the finer, text-weighted score.
CANDIDATES = 8
# Calibrated only if the agent lines landing on a segment start weigh at least this share
# of all agent lines (a line counts 1, up to 2 when the segment sounds like it).
MIN_MATCHED_SHARE = 1 / 3
# The first words of a line and of its segment: an utterance and its recording begin alike.
PREFIX_WORDS = 3

_NON_WORD = re.compile(r"\W")
_Tokens = tuple[str, ...]  # lowercase words without punctuation, in order


@dataclasses.dataclass(frozen=True, slots=True)
class BatchWord:
    """One word of the bot-only recording as Deepgram batch heard it: `text` is the
    punctuated form, times in seconds on the recording clock."""

    text: str
    start_s: float
    end_s: float
    confidence: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Word:
    text: str
    start_ms: int
    end_ms: int
    confidence: float
    gap_ms: float  # silence before it on the track (infinite for the first word)


@dataclasses.dataclass(frozen=True, slots=True)
class _AgentLine:
    at_ms: int
    tokens: _Tokens


def _tokens(text: str) -> _Tokens:
    return tuple(t for t in (_NON_WORD.sub("", w.lower()) for w in text.split()) if t)


def _timed(words: Sequence[BatchWord]) -> list[_Word]:
    ordered = sorted(words, key=lambda w: (w.start_s, w.end_s))
    timed: list[_Word] = []
    heard_until = -math.inf
    for word in ordered:
        start, end = round(word.start_s * 1000), round(word.end_s * 1000)
        timed.append(_Word(word.text, start, max(start, end), word.confidence, start - heard_until))
        heard_until = max(heard_until, end)
    return timed


def _agent_lines(lines: Sequence[Mapping[str, Any]]) -> list[_AgentLine]:
    agent = [
        _AgentLine(int(ln.get("offset_ms") or 0), _tokens(str(ln["text"])))
        for ln in transcripts.kept_lines(lines)
        if ln.get("speaker") == transcripts.AGENT
    ]
    return sorted(agent, key=lambda line: line.at_ms)


def calibration_delta_ms(
    words: Sequence[BatchWord], lines: Sequence[Mapping[str, Any]]
) -> int | None:
    """recording − media in ms, learnt from where the agent lines' audio begins, or None
    when the agent lines and the recorded words do not agree on any offset."""
    return _calibrate(_timed(words), _agent_lines(lines))


def _calibrate(words: Sequence[_Word], agent: Sequence[_AgentLine]) -> int | None:
    """Each (segment start − agent line start) pair proposes an offset; the offsets that
    most agent lines agree on (within the tolerance) get a finer score that also weighs
    the words each line shares with its segment, once refined to the median of their
    matched pairs. O(P log P) for the P pairs, which MAX_DELTA_MS keeps near linear in the
    call's length."""
    segments = _segments(words)
    if not agent or not segments:
        return None
    starts = [seg[0] for seg in segments]
    pairs = sorted(
        (starts[j] - line.at_ms, i)
        for i, line in enumerate(agent)
        for j in range(*_span(starts, line.at_ms, MAX_DELTA_MS))
    )
    if not pairs:
        return None
    refined = {r for r in (_refine(c, agent, starts) for c in _centres(pairs)) if r is not None}
    ranked = sorted(((_score(r, agent, starts, segments), r) for r in refined), reverse=True)
    if not ranked:
        return None
    (best, delta), rivals = ranked[0], ranked[1:]
    if any(score[:2] == best[:2] and abs(other - delta) > TOLERANCE_MS for score, other in rivals):
        return None  # two offsets fit equally well: better no calibration than a wrong one
    if best[0] < max(1, math.ceil(len(agent) * MIN_MATCHED_SHARE)):
        return None
    return delta


def _refine(delta: float, agent: Sequence[_AgentLine], starts: Sequence[int]) -> int | None:
    """The median offset of the pairs matched around `delta`, matched again around it."""
    for _ in range(2):
        found = (_residual(starts, line.at_ms, delta) for line in agent)
        residuals = [r for r in found if r is not None]
        if not residuals:
            return None
        delta = statistics.median(residuals)
    return round(delta)


def _segments(words: Sequence[_Word]) -> list[tuple[int, _Tokens]]:
    """(start, words said) of each stretch of speech between pauses of SEGMENT_GAP_MS."""
    segments: list[tuple[int, _Tokens]] = []
    said: list[str] = []
    for word in words:
        if word.gap_ms >= SEGMENT_GAP_MS and said:
            segments[-1] = (segments[-1][0], _tokens(" ".join(said)))
            said = []
        if not said:
            segments.append((word.start_ms, ()))
        said.append(word.text)
    if said:
        segments[-1] = (segments[-1][0], _tokens(" ".join(said)))
    return segments


def _span(starts: Sequence[int], centre: float, radius: float) -> tuple[int, int]:
    """The index range of the sorted `starts` within `radius` of `centre`."""
    return bisect.bisect_left(starts, centre - radius), bisect.bisect_right(starts, centre + radius)


def _centres(pairs: Sequence[tuple[int, int]]) -> list[float]:
    """The CANDIDATES offsets (window centres) that most distinct agent lines agree on, at
    least TOLERANCE_MS apart: a sliding window of 2 × TOLERANCE_MS over the sorted pairs."""
    window: collections.Counter[int] = collections.Counter()
    counted: list[tuple[int, float]] = []
    right = 0
    for delta, line in pairs:
        while right < len(pairs) and pairs[right][0] <= delta + 2 * TOLERANCE_MS:
            window[pairs[right][1]] += 1
            right += 1
        counted.append((len(window), delta + TOLERANCE_MS))
        window[line] -= 1
        if not window[line]:
            del window[line]
    counted.sort(key=lambda item: -item[0])
    picked: list[float] = []
    for _, centre in counted:
        if all(abs(centre - other) > TOLERANCE_MS for other in picked):
            picked.append(centre)
            if len(picked) == CANDIDATES:
                break
    return picked


def _likeness(said: _Tokens, heard: _Tokens) -> float:
    """How much a segment sounds like the start of a line, 0–1: the words they share over
    the smaller side (a cut-short utterance still matches fully), averaged with the same
    over their first PREFIX_WORDS (a segment from mid-line, or from another line with the
    same words, scores lower)."""
    if not said or not heard:
        return 0.0
    k = min(PREFIX_WORDS, len(said), len(heard))
    return (_shared(said, heard) + _shared(said[:k], heard[:k])) / 2


def _shared(a: _Tokens, b: _Tokens) -> float:
    left, right = set(a), set(b)
    return len(left & right) / min(len(left), len(right))


def _score(
    delta: float,
    agent: Sequence[_AgentLine],
    starts: Sequence[int],
    segments: Sequence[tuple[int, _Tokens]],
) -> tuple[float, int, float]:
    """Agent lines with a segment start within the tolerance, each counting 1 plus its best
    `_likeness`; ties go to more words in common (a stray word that happens to open a
    line is likeness 1 too), then to the smaller total distance."""
    weight, common, distance = 0.0, 0, 0.0
    for line in agent:
        lo, hi = _span(starts, line.at_ms + delta, TOLERANCE_MS)
        if lo < hi:
            weight += 1 + max(_likeness(line.tokens, segments[j][1]) for j in range(lo, hi))
            common += max(len(set(line.tokens) & set(segments[j][1])) for j in range(lo, hi))
            distance += min(abs(starts[j] - line.at_ms - delta) for j in range(lo, hi))
    return weight, common, -distance


def _residual(starts: Sequence[int], at_ms: int, delta: float) -> int | None:
    """segment start − line start for the segment nearest the calibrated line, if within
    the tolerance."""
    lo, hi = _span(starts, at_ms + delta, TOLERANCE_MS)
    if lo == hi:
        return None
    return min((starts[j] - at_ms for j in range(lo, hi)), key=lambda r: abs(r - delta))


def merge_recording(
    words: Sequence[BatchWord], lines: Sequence[Mapping[str, Any]], duration_sec: float | None
) -> dict[str, Any] | None:
    """The merged transcript of a finished call from its recorded bot words and its stored
    live lines, on the recording clock; None when the two cannot be calibrated (the caller
    falls back to `transcripts.merge_live`).

    Agent turns are the recorded words, split where an agent line begins
    (`_utterance_start`), at a pause after the callee began to speak, and at pauses before
    the first agent line (words that run into it join it); a line nothing was heard of is
    no turn. Callee turns are the kept
    callee lines shifted by the calibration (never before the recording's start); their
    ends are estimated as in `merge_live`. `overlap_with_next` marks a turn whose end
    (measured, or estimated from its words) passes the other party's next start.
    """
    timed = _timed(words)
    agent = _agent_lines(lines)
    delta = _calibrate(timed, agent)
    if delta is None:
        return None
    callee = [
        transcripts.Turn(
            str(ln.get("speaker") or transcripts.CALLEE),
            max(0, int(ln.get("offset_ms") or 0) + delta),
            0,
            str(ln["text"]).strip(),
            str(ln.get("source") or ""),
        )
        for ln in transcripts.kept_lines(lines)
        if ln.get("speaker") != transcripts.AGENT
    ]
    heard = _agent_turns(timed, agent, delta, sorted(t.start_ms for t in callee))
    ordered = sorted([*heard, *callee], key=lambda t: (t.start_ms, t.speaker != transcripts.AGENT))
    duration_ms = None if duration_sec is None else round(duration_sec * 1000)
    turns = _ended(ordered, duration_ms)
    return {
        "version": VERSION,
        "merge": MERGE_RECORDING,
        "degraded": False,
        "duration_ms": max([duration_ms or 0, *(t.end_ms for t in turns)]),
        "calibration_delta_ms": delta,
        "turns": [t.as_dict() for t in turns],
    }


def _agent_turns(
    words: Sequence[_Word], agent: Sequence[_AgentLine], delta: int, callee_starts: list[int]
) -> list[transcripts.Turn]:
    """The recorded words cut into utterances (see `merge_recording`)."""
    starts = [w.start_ms for w in words]
    tokens = [_tokens(w.text) for w in words]
    anchors = {
        k
        for k in (_utterance_start(words, starts, tokens, line, delta) for line in agent)
        if k is not None
    }
    first_line = min(anchors, default=len(words))
    cuts = {0, *anchors} if words else set()
    if first_line < len(words) and words[first_line].gap_ms < SEGMENT_GAP_MS:
        cuts.discard(first_line)  # words just before the first line, without a pause, join it
    turn_start = -math.inf
    for k, word in enumerate(words):
        if k in cuts:
            turn_start = word.start_ms
        elif word.gap_ms >= SEGMENT_GAP_MS and (
            k < first_line or _any_between(callee_starts, turn_start, word.start_ms)
        ):
            cuts.add(k)
            turn_start = word.start_ms
    bounds = [*sorted(cuts), len(words)]
    return [_agent_turn(words[a:b]) for a, b in itertools.pairwise(bounds) if a < b]


def _utterance_start(
    words: Sequence[_Word],
    starts: Sequence[int],
    tokens: Sequence[_Tokens],
    line: _AgentLine,
    delta: int,
) -> int | None:
    """The word an agent line's audio begins with, within the tolerance of its calibrated
    start: after a pause, the one whose next words sound most like the line's first
    words, then the one after the longest pause, then the nearest; but where the line's
    first words are heard in order (said with no pause after the previous line), there.
    None if neither (the line was never heard)."""
    at = line.at_ms + delta
    lo, hi = _span(starts, at, TOLERANCE_MS)
    opening = line.tokens[:PREFIX_WORDS]

    def alike(k: int) -> float:
        heard = tuple(t for ts in tokens[k : k + PREFIX_WORDS] for t in ts)[:PREFIX_WORDS]
        return _shared(opening, heard) if opening and heard else 0.0

    def fit(k: int) -> tuple[float, float, int]:
        return alike(k), words[k].gap_ms, -abs(starts[k] - at)

    def in_order(k: int) -> tuple[int, int]:
        heard = tuple(t for ts in tokens[k : k + PREFIX_WORDS] for t in ts)[:PREFIX_WORDS]
        same = sum(1 for a, b in zip(opening, heard, strict=False) if a == b)
        return same, -abs(starts[k] - at)

    # A line said straight after the previous one has no pause before it: it starts where
    # its own first words are heard in order. That wins over a pause inside the previous
    # line whose next words only share some of them.
    whole = min(PREFIX_WORDS, len(opening))
    in_place = max(range(lo, hi), key=in_order, default=None)
    after_pause = [k for k in range(lo, hi) if words[k].gap_ms >= ANCHOR_GAP_MS]
    if after_pause:
        best = max(after_pause, key=fit)
        if in_place is not None and in_order(in_place)[0] == whole > in_order(best)[0]:
            return in_place
        return best
    if in_place is None or in_order(in_place)[0] < min(BACK_TO_BACK_WORDS, whole):
        return None
    return in_place


def _any_between(sorted_starts: list[int], after: float, before: float) -> bool:
    return bisect.bisect_right(sorted_starts, after) < bisect.bisect_left(sorted_starts, before)


def _agent_turn(words: Sequence[_Word]) -> transcripts.Turn:
    return transcripts.Turn(
        transcripts.AGENT,
        words[0].start_ms,
        max(w.end_ms for w in words),
        " ".join(w.text for w in words),
        BATCH,
        words=tuple(
            transcripts.TimedWord(w.text, w.start_ms, w.end_ms, w.confidence) for w in words
        ),
    )


def _ended(ordered: Sequence[transcripts.Turn], duration_ms: int | None) -> list[transcripts.Turn]:
    """Ends and overlaps: an agent turn keeps its measured end; a callee turn's estimated
    end stops at the next start (or the recording's end) as in `merge_live`."""
    ended: list[transcripts.Turn] = []
    for index, turn in enumerate(ordered):
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        if turn.words:
            until = end = turn.end_ms
        else:
            until = end = turn.start_ms + transcripts.spoken_ms(turn.text)
            if following is not None:
                end = min(end, following.start_ms)
            elif duration_ms is not None:
                end = min(end, duration_ms)
            end = max(turn.start_ms, end)
        overlap = (
            following is not None
            and following.speaker != turn.speaker
            and until > following.start_ms
        )
        ended.append(dataclasses.replace(turn, end_ms=end, overlap_with_next=overlap))
    return ended
