"""The recording-based merged transcript: calibration and fusion on synthetic calls, pure."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from core.domain import transcript_merge
from core.domain.transcript_merge import BatchWord, calibration_delta_ms, merge_recording
from core.domain.transcripts import merge_live

VOCAB = (
    "hi table for two tomorrow at seven please thank you would like to book a the evening "
    "is there any chance of outside terrace window great perfect name Anna confirm"
).split()
JITTER_MS = 120


@dataclasses.dataclass
class SyntheticCall:
    """A call whose truth is known: the live lines and recorded words it produced, and the
    turns a perfect merge would give (speaker, start on the recording clock, text)."""

    delta_ms: int
    rng: random.Random
    now_ms: int = 1500  # the media clock: ms since the first media stream
    lines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    words: list[BatchWord] = dataclasses.field(default_factory=list)
    truth: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)
    ear_lost: bool = False  # from then on Gemini's callee lines are the only record

    def _say(self, count: int) -> list[tuple[str, int, int]]:
        """`count` words from now on the media clock: (punctuated word, start, end)."""
        said, at = [], self.now_ms
        for index in range(count):
            word = self.rng.choice(VOCAB)
            word = word.capitalize() if index == 0 else word
            word = word + "." if index == count - 1 else word
            length = self.rng.randint(180, 450)
            said.append((word, at, at + length))
            pause = self.rng.randint(220, 380) if self.rng.random() < 0.15 else 0
            at += length + self.rng.randint(10, 110) + pause
        return said

    def agent(self, count: int, heard: int | None = None) -> list[tuple[str, int, int]]:
        """The agent says `count` words from now; the callee hears the first `heard` (all by
        default, none for a line cleared before it played). Returns the words played."""
        said = self._say(count)
        sent = self.now_ms + self.rng.randint(-JITTER_MS, JITTER_MS)
        self.lines.append(line("agent", _join(said), sent, "gemini"))
        played = said[: count if heard is None else heard]
        self._record(played)
        if played:
            self.truth.append(("agent", played[0][1] + self.delta_ms, _join(played)))
        return played

    def _record(self, said: list[tuple[str, int, int]]) -> None:
        for word, start, end in said:
            self.words.append(
                BatchWord(word, (start + self.delta_ms) / 1000, (end + self.delta_ms) / 1000, 0.9)
            )

    def stray(self, count: int) -> None:
        """Bot audio the live lines lack."""
        said = self._say(count)
        self._record(said)
        self.truth.append(("agent", said[0][1] + self.delta_ms, _join(said)))
        self.now_ms = said[-1][2]

    def unreported(self) -> None:
        """Bot audio with no live line, after the callee spoke: an agent turn of its own."""
        self.stray(self.rng.randint(1, 4))
        self.pause()
        self.now_ms = self.callee(self.rng.randint(1, 5))
        self.pause()

    def callee(self, count: int) -> int:
        said = self._say(count)
        text = _join(said)
        source = "gemini" if self.ear_lost else "supervisor_stt"
        self.lines.append(line("callee", text, self.now_ms, source))
        self.truth.append(("callee", self.now_ms + self.delta_ms, text))
        return said[-1][2]

    def pause(self, low: int = 600, high: int = 2000) -> None:
        self.now_ms += self.rng.randint(low, high)

    def exchange(self) -> None:
        """An agent line, a pause, the callee's answer, a pause."""
        self.now_ms = self.agent(self.rng.randint(3, 14))[-1][2]
        self.pause()
        self.now_ms = self.callee(self.rng.randint(1, 8))
        self.pause()

    def barge_in(self) -> None:
        """The callee talks over the agent, whose audio is cleared a word later."""
        count = self.rng.randint(8, 14)
        played = self.agent(count, heard=self.rng.randint(3, count - 3))
        self.now_ms = played[-1][1]  # the callee began as the last heard word did
        self.now_ms = self.callee(self.rng.randint(2, 6))
        self.pause()

    def unheard(self) -> None:
        """An agent line cleared before it played: the callee goes on talking."""
        self.agent(self.rng.randint(3, 10), heard=0)
        self.pause(600, 900)
        self.now_ms = self.callee(self.rng.randint(1, 5))
        self.pause()

    def back_to_back(self) -> None:
        """Two agent lines with only a short pause between them (say, around a tool call)."""
        self.now_ms = self.agent(self.rng.randint(3, 8))[-1][2] + self.rng.randint(250, 450)
        self.now_ms = self.agent(self.rng.randint(3, 8))[-1][2]
        self.pause()
        self.now_ms = self.callee(self.rng.randint(1, 5))
        self.pause()

    def seamless(self) -> None:
        """Two agent lines with no pause at all between them: the second's audio follows
        the first's last frame ("Let me check." "My customer says yes…")."""
        self.now_ms = self.agent(self.rng.randint(3, 8))[-1][2] + self.rng.randint(10, 110)
        self.now_ms = self.agent(self.rng.randint(4, 8))[-1][2]
        self.pause()
        self.now_ms = self.callee(self.rng.randint(1, 5))
        self.pause()

    def hesitant(self) -> None:
        """One agent line with a long pause inside it ("Let me check… yes, we can")."""
        first = self._say(3)
        self.now_ms = first[-1][2] + self.rng.randint(600, 1200)
        rest = self._say(4)
        sent = first[0][1] + self.rng.randint(-JITTER_MS, JITTER_MS)
        self.lines.append(line("agent", _join(first + rest), sent, "gemini"))
        self._record(first + rest)
        self.truth.append(("agent", first[0][1] + self.delta_ms, _join(first + rest)))
        self.now_ms = rest[-1][2]
        self.pause()
        self.now_ms = self.callee(self.rng.randint(1, 5))
        self.pause()

    def recording_s(self) -> float:
        return (self.now_ms + self.delta_ms + 1000) / 1000


def _join(said: list[tuple[str, int, int]]) -> str:
    return " ".join(word for word, _, _ in said)


def line(speaker: str, text: str, offset_ms: int, source: str) -> dict[str, Any]:
    return {
        "speaker": speaker,
        "text": text,
        "final": True,
        "offset_ms": offset_ms,
        "source": source,
    }


def assert_matches_truth(call: SyntheticCall, merged: dict[str, Any] | None) -> None:
    assert merged is not None
    got = [(t["speaker"], t["text"]) for t in merged["turns"]]
    assert got == [(speaker, text) for speaker, _, text in call.truth]
    for turn, (_, start, _) in zip(merged["turns"], call.truth, strict=True):
        assert abs(turn["start_ms"] - start) <= 150, (turn, start)


def test_a_known_positive_delta_is_recovered() -> None:
    call = SyntheticCall(1234, random.Random(7))
    for index in range(25):
        call.exchange()
        if index % 8 == 3:
            call.unreported()  # recorded words the live lines lack
    merged = merge_recording(call.words, call.lines, call.recording_s())
    assert merged is not None
    assert abs(merged["calibration_delta_ms"] - 1234) <= 50
    assert_matches_truth(call, merged)


def test_a_known_negative_delta_is_recovered() -> None:
    call = SyntheticCall(-800, random.Random(8))
    for _ in range(25):
        call.exchange()
    delta = calibration_delta_ms(call.words, call.lines)
    assert delta is not None
    assert abs(delta - -800) <= 50
    assert_matches_truth(call, merge_recording(call.words, call.lines, call.recording_s()))


def test_the_shape_is_version_2_on_the_recording_clock_with_timed_agent_words() -> None:
    call = SyntheticCall(2000, random.Random(1))
    for _ in range(3):
        call.exchange()
    merged = merge_recording(call.words, call.lines, 60.0)
    assert merged is not None
    assert {k: merged[k] for k in ("version", "merge", "degraded", "duration_ms")} == {
        "version": 2,
        "merge": "recording",
        "degraded": False,
        "duration_ms": 60000,
    }
    first_agent, first_callee = merged["turns"][0], merged["turns"][1]
    assert first_agent["source"] == "deepgram_batch"
    assert first_agent["words"][0] == {
        "word": call.words[0].text,
        "start_ms": round(call.words[0].start_s * 1000),
        "end_ms": round(call.words[0].end_s * 1000),
        "confidence": 0.9,
    }
    assert first_agent["start_ms"] == first_agent["words"][0]["start_ms"]
    assert first_agent["end_ms"] == first_agent["words"][-1]["end_ms"]
    assert first_callee["source"] == "supervisor_stt"
    assert "words" not in first_callee
    assert first_callee["start_ms"] == call.lines[1]["offset_ms"] + merged["calibration_delta_ms"]


def test_duration_is_at_least_the_last_end() -> None:
    call = SyntheticCall(500, random.Random(2))
    call.exchange()
    call.now_ms = call.agent(5)[-1][2]
    merged = merge_recording(call.words, call.lines, 1.0)
    assert merged is not None
    assert merged["duration_ms"] == merged["turns"][-1]["end_ms"]
    assert merge_recording(call.words, call.lines, None) == merged


def test_a_barge_in_truncates_the_agent_turn_and_overlaps_the_callee() -> None:
    call = SyntheticCall(1500, random.Random(3))
    for _ in range(4):
        call.exchange()
    call.barge_in()
    for _ in range(4):
        call.exchange()
    merged = merge_recording(call.words, call.lines, call.recording_s())
    assert_matches_truth(call, merged)
    assert merged is not None
    cut = merged["turns"][8]
    assert cut["speaker"] == "agent"
    assert cut["overlap_with_next"] is True
    assert cut["end_ms"] > merged["turns"][9]["start_ms"]
    assert len(cut["text"].split()) < len(call.lines[8]["text"].split())
    assert call.lines[8]["text"].startswith(cut["text"])
    others = merged["turns"][:8] + merged["turns"][9:]
    assert not any(t.get("overlap_with_next") for t in others)


def test_an_agent_line_never_heard_is_no_turn() -> None:
    call = SyntheticCall(3000, random.Random(4))
    for _ in range(3):
        call.exchange()
    call.unheard()
    for _ in range(3):
        call.exchange()
    merged = merge_recording(call.words, call.lines, call.recording_s())
    assert_matches_truth(call, merged)  # the truth has no turn for the cleared line
    assert merged is not None
    assert sum(t["speaker"] == "agent" for t in merged["turns"]) == 6


def test_back_to_back_lines_are_two_turns_and_a_pause_inside_a_line_is_not() -> None:
    call = SyntheticCall(-1200, random.Random(12), now_ms=2500)
    for _ in range(3):
        call.exchange()
    call.back_to_back()
    call.hesitant()
    for _ in range(3):
        call.exchange()
    assert_matches_truth(call, merge_recording(call.words, call.lines, call.recording_s()))


def test_a_line_said_with_no_pause_after_the_last_starts_at_its_own_first_words() -> None:
    for seed in range(20):
        call = SyntheticCall(900, random.Random(seed), now_ms=2000)
        call.exchange()
        call.seamless()
        call.exchange()
        assert_matches_truth(call, merge_recording(call.words, call.lines, call.recording_s()))


def test_stray_words_before_the_first_agent_line_are_an_agent_turn_of_their_own() -> None:
    call = SyntheticCall(900, random.Random(5))
    call.stray(2)  # e.g. "Hello?" before the first agent line was reported
    call.pause(1500, 2500)
    for _ in range(4):
        call.exchange()
    merged = merge_recording(call.words, call.lines, call.recording_s())
    assert_matches_truth(call, merged)
    assert merged is not None
    assert merged["turns"][0]["source"] == "deepgram_batch"
    assert merged["turns"][1]["speaker"] == "agent"


def test_a_word_that_runs_into_the_first_agent_line_joins_its_turn() -> None:
    call = SyntheticCall(1000, random.Random(13))
    for _ in range(5):
        call.exchange()
    first = call.words[0]
    call.words.insert(0, BatchWord("Hi,", first.start_s - 0.45, first.start_s - 0.25, 0.9))
    speaker, start, text = call.truth[0]
    call.truth[0] = (speaker, start - 450, "Hi, " + text)  # a short pause: no turn of its own
    assert_matches_truth(call, merge_recording(call.words, call.lines, call.recording_s()))


def test_an_ear_lost_call_keeps_geminis_callee_lines() -> None:
    call = SyntheticCall(700, random.Random(6))
    for _ in range(3):
        call.exchange()
    call.ear_lost = True
    for _ in range(3):
        call.exchange()
    merged = merge_recording(call.words, call.lines, call.recording_s())
    assert_matches_truth(call, merged)
    assert merged is not None
    assert [t["source"] for t in merged["turns"] if t["speaker"] == "callee"] == [
        "supervisor_stt"
    ] * 3 + ["gemini"] * 3


def test_nothing_to_calibrate_is_none_so_the_caller_falls_back() -> None:
    call = SyntheticCall(1000, random.Random(9))
    for _ in range(3):
        call.exchange()
    callee_only = [ln for ln in call.lines if ln["speaker"] == "callee"]
    assert merge_recording(call.words, callee_only, 30.0) is None
    assert merge_recording([], call.lines, 30.0) is None
    assert merge_live(call.lines, 30.0)["degraded"] is True  # the fallback still stands


def test_words_far_from_every_agent_line_do_not_calibrate() -> None:
    words = [BatchWord("Hello.", 500.0, 500.4, 0.9)]  # 8 minutes away from the only line
    lines = [line("agent", "Hello.", 1000, "gemini")]
    assert merge_recording(words, lines, None) is None


def test_too_few_agent_lines_agreeing_do_not_calibrate() -> None:
    words = [BatchWord("Hello.", 1.0, 1.4, 0.9)]
    lines = [line("agent", f"Line {i}.", 1000 + 5000 * i, "gemini") for i in range(4)]
    assert calibration_delta_ms(words, lines) is None  # one of four lines is not a third


def test_a_single_heard_line_calibrates_on_its_own() -> None:
    words = [BatchWord("Hello,", 3.2, 3.5, 0.9), BatchWord("Luigi's?", 3.6, 4.1, 0.8)]
    merged = merge_recording(words, [line("agent", "Hello, Luigi's?", 1000, "gemini")], 5)
    assert merged is not None
    assert merged["calibration_delta_ms"] == 2200
    assert [(t["text"], t["start_ms"], t["end_ms"]) for t in merged["turns"]] == [
        ("Hello, Luigi's?", 3200, 4100)
    ]


def test_a_stray_word_that_opens_the_line_does_not_pull_the_calibration() -> None:
    heard = ["Tomorrow,", "a", "table", "for", "two?"]
    words = [BatchWord("Tomorrow?", 0.5, 0.9, 0.6)] + [
        BatchWord(word, 3.0 + 0.4 * i, 3.3 + 0.4 * i, 0.9) for i, word in enumerate(heard)
    ]
    lines = [line("agent", "Tomorrow, a table for two?", 1000, "gemini")]
    assert calibration_delta_ms(words, lines) == 2000


def test_two_offsets_that_fit_equally_well_do_not_calibrate() -> None:
    words = [BatchWord("Yes.", 0.5, 0.8, 0.9), BatchWord("Okay.", 5.0, 5.3, 0.9)]
    lines = [line("agent", "Good evening", 1000, "gemini")]  # shares no word with either
    assert calibration_delta_ms(words, lines) is None


@pytest.mark.parametrize("seed", range(200))
def test_random_calls_merge_to_their_truth(seed: int) -> None:
    rng = random.Random(seed)
    delta = rng.randint(-5000, 30000)
    call = SyntheticCall(delta, rng, now_ms=max(1500, 500 - delta))
    if rng.random() < 0.2:
        call.stray(rng.randint(1, 3))
        call.pause(1200, 3000)
    call.exchange()
    exchanges = rng.randint(0, 20)
    ear_lost_after = rng.choice([exchanges, rng.randint(0, exchanges)])
    for index in range(exchanges):
        call.ear_lost = index >= ear_lost_after
        roll = rng.random()
        if roll < 0.1:
            call.barge_in()
        elif roll < 0.2:
            call.unheard()
        elif roll < 0.3:
            call.back_to_back()
        elif roll < 0.4:
            call.hesitant()
        elif roll < 0.45:
            call.unreported()
        elif roll < 0.5:
            call.seamless()
        else:
            call.exchange()
    merged = merge_recording(call.words, call.lines, call.recording_s())
    assert merged is not None
    # Every residual is within the jitter of the truth, and so is their median.
    assert abs(merged["calibration_delta_ms"] - delta) <= JITTER_MS
    assert_matches_truth(call, merged)


def test_a_long_call_merges_like_a_short_one() -> None:
    call = SyntheticCall(4321, random.Random(11))
    for _ in range(500):  # a thousand lines: about an hour of talk
        call.exchange()
    merged = merge_recording(call.words, call.lines, call.recording_s())
    assert merged is not None
    assert abs(merged["calibration_delta_ms"] - 4321) <= 50
    assert_matches_truth(call, merged)
    assert transcript_merge.MAX_DELTA_MS < call.recording_s() * 1000  # the bound did prune
