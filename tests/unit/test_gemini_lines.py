"""Gemini's transcription has no end-of-utterance flag: lines end on turn events or silence."""

from __future__ import annotations

from media.call.lines import GeminiLines, Line


def test_an_agent_line_is_its_whole_turn_and_ends_at_turn_complete() -> None:
    lines = GeminiLines()
    assert lines.model_started() == []
    assert lines.said("Good evening,", 100, 1, now=0.1) == []
    assert lines.said(" a table for four?", 300, 1, now=0.3) == []
    assert lines.generation_complete() == []  # transcription may still trail the audio
    assert lines.said(" Please.", 500, 1, now=0.5) == []
    assert lines.turn_complete() == [
        Line("agent", "Good evening, a table for four? Please.", 100, 1)
    ]
    assert lines.turn_complete() == []  # once


def test_an_interrupted_turn_is_one_line_including_pieces_after_the_interrupt() -> None:
    lines = GeminiLines()
    lines.said("We would like", 100, 1, now=0.1)
    assert lines.interrupted() == []
    lines.said(" a table", 200, 1, now=0.2)
    assert lines.turn_complete() == [Line("agent", "We would like a table", 100, 1)]


def test_the_callee_line_ends_when_the_model_starts_answering() -> None:
    lines = GeminiLines()
    lines.heard("Hello,", 10, now=0.0)
    lines.heard(" Roma restaurant.", 20, now=0.2)
    assert lines.model_started() == [Line("callee", "Hello, Roma restaurant.", 10)]
    lines.said("Hi!", 30, 1, now=0.3)
    assert lines.turn_complete() == [Line("agent", "Hi!", 30, 1)]


def test_a_first_output_piece_also_ends_the_callee_line() -> None:
    lines = GeminiLines()
    lines.heard("Hello.", 10, now=0.0)
    assert lines.said("Hi!", 30, 1, now=0.3) == [Line("callee", "Hello.", 10)]


def test_callee_words_transcribed_during_the_answer_end_at_generation_complete() -> None:
    lines = GeminiLines()
    lines.model_started()
    lines.heard("Yes, at seven.", 50, now=0.5)
    lines.said("Great.", 60, 1, now=0.6)  # the same turn: no new line for the callee yet
    assert lines.generation_complete() == [Line("callee", "Yes, at seven.", 50)]
    assert lines.turn_complete() == [Line("agent", "Great.", 60, 1)]


def test_a_barge_in_keeps_the_callees_new_words_together_across_the_bare_turn_complete() -> None:
    lines = GeminiLines()
    lines.said("Would eight", 10, 1, now=0.1)
    lines.heard("Earlier.", 5, now=0.0)  # said before the barge-in
    assert lines.interrupted() == [Line("callee", "Earlier.", 5)]
    lines.heard("Wait,", 100, now=1.0)
    assert lines.turn_complete() == [Line("agent", "Would eight", 10, 1)]
    lines.heard(" I meant seven.", 120, now=1.2)
    assert lines.model_started() == [Line("callee", "Wait, I meant seven.", 100)]


def test_a_callee_line_with_no_answer_ends_after_a_silence() -> None:
    lines = GeminiLines(silence_s=1.5)
    lines.heard("Please leave a message", 10, now=10.0)
    lines.heard(" after the tone.", 20, now=10.5)
    assert lines.tick(now=11.9) == []
    assert lines.tick(now=12.0) == [Line("callee", "Please leave a message after the tone.", 10)]
    assert lines.tick(now=20.0) == []


def test_an_agent_line_waits_for_its_turn_unless_the_turn_was_cut_or_generated() -> None:
    lines = GeminiLines(silence_s=1.0)
    lines.said("Still talking", 10, 1, now=0.0)
    assert lines.tick(now=5.0) == []  # mid-turn: a slow model is not a line end
    lines.generation_complete()
    assert lines.tick(now=5.0) == [Line("agent", "Still talking", 10, 1)]


def test_a_new_turn_without_turn_complete_ends_the_previous_agent_line() -> None:
    lines = GeminiLines()
    lines.said("First.", 10, 1, now=0.0)
    lines.interrupted()
    lines.heard("Hm?", 20, now=0.5)
    assert lines.model_started() == [Line("agent", "First.", 10, 1), Line("callee", "Hm?", 20)]


def test_close_ends_everything_in_time_order() -> None:
    lines = GeminiLines()
    lines.said("Goodbye.", 30, 2, now=0.0)
    lines.heard("Bye", 40, now=0.1)
    assert lines.close() == [Line("agent", "Goodbye.", 30, 2), Line("callee", "Bye", 40)]
    assert lines.close() == []
