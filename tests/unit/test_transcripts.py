"""The degraded (live-lines-only) merged transcript: pure, no I/O."""

from __future__ import annotations

from typing import Any

from core.domain.transcripts import merge_live, spoken_ms


def line(speaker: str, text: str, offset_ms: int, source: str = "gemini") -> dict[str, Any]:
    return {
        "speaker": speaker,
        "text": text,
        "final": True,
        "offset_ms": offset_ms,
        "source": source,
    }


def test_empty_call_is_an_empty_degraded_transcript() -> None:
    assert merge_live([], 12.5) == {
        "version": 1,
        "merge": "live_only",
        "degraded": True,
        "duration_ms": 12500,
        "calibration_delta_ms": None,
        "turns": [],
    }
    assert merge_live([], None)["duration_ms"] is None


def test_turns_are_ordered_by_start_and_ties_keep_arrival_order() -> None:
    merged = merge_live(
        [
            line("callee", "Sure", 9000, "supervisor_stt"),
            line("agent", "Hello", 1000),
            line("agent", "Same instant", 5000),
            line("callee", "Also then", 5000, "supervisor_stt"),
        ],
        20,
    )
    assert [(t["start_ms"], t["text"]) for t in merged["turns"]] == [
        (1000, "Hello"),
        (5000, "Same instant"),
        (5000, "Also then"),
        (9000, "Sure"),
    ]
    assert [t["source"] for t in merged["turns"]] == [
        "live_agent",
        "live_agent",
        "supervisor_stt",
        "supervisor_stt",
    ]


def test_the_ears_callee_lines_replace_geminis_copies() -> None:
    merged = merge_live(
        [
            line("agent", "Hi, a table for two?", 0),
            line("callee", "yes we have one", 3000, "gemini"),
            line("callee", "Yes, we have one.", 3100, "supervisor_stt"),
        ],
        10,
    )
    assert [(t["speaker"], t["text"], t["source"]) for t in merged["turns"]] == [
        ("agent", "Hi, a table for two?", "live_agent"),
        ("callee", "Yes, we have one.", "supervisor_stt"),
    ]


def test_geminis_callee_lines_stand_in_when_the_ear_heard_nothing() -> None:
    merged = merge_live([line("agent", "Hello?", 0), line("callee", "Hello", 2000, "gemini")], 5)
    assert [(t["speaker"], t["source"]) for t in merged["turns"]] == [
        ("agent", "live_agent"),
        ("callee", "gemini"),
    ]


def test_geminis_callee_lines_after_the_ears_last_line_are_the_fallback_record() -> None:
    merged = merge_live(
        [
            line("callee", "Hello, Luigi's.", 0, "supervisor_stt"),
            line("agent", "Hi, a table for two?", 1000),
            line("callee", "we are fully booked", 3000, "gemini"),  # the ear was lost
            line("callee", "sorry", 5000, "gemini"),
        ],
        10,
    )
    assert [(t["text"], t["source"]) for t in merged["turns"]] == [
        ("Hello, Luigi's.", "supervisor_stt"),
        ("Hi, a table for two?", "live_agent"),
        ("we are fully booked", "gemini"),
        ("sorry", "gemini"),
    ]


def test_non_final_and_blank_lines_are_left_out() -> None:
    partial = {**line("agent", "Hel", 0), "final": False}
    merged = merge_live([partial, line("agent", "   ", 10), line("agent", " Hello ", 20)], 5)
    assert [t["text"] for t in merged["turns"]] == ["Hello"]


def test_end_is_the_spoken_length_cut_at_the_next_start_or_the_call_end() -> None:
    six_words = "one two three four five six"  # 2 s at three words a second
    assert spoken_ms(six_words) == 2000
    merged = merge_live(
        [
            line("agent", six_words, 1000),  # next turn 10 s later: ends when said
            line("callee", six_words, 11000, "supervisor_stt"),  # the last: cut at the call end
        ],
        12.0,
    )
    assert [(t["start_ms"], t["end_ms"]) for t in merged["turns"]] == [
        (1000, 3000),
        (11000, 12000),
    ]
    assert not any("overlap_with_next" in t for t in merged["turns"])


def test_end_never_precedes_start() -> None:
    # The carrier's duration can be shorter than the media clock says.
    merged = merge_live([line("agent", "Goodbye", 9000)], 5.0)
    assert merged["turns"][0]["end_ms"] == 9000


def test_overlap_is_flagged_when_the_words_run_past_the_other_partys_start() -> None:
    long = "I would like to book a table for two people tomorrow evening please"
    merged = merge_live(
        [
            line("agent", long, 0),
            line("callee", "Sorry?", 1000, "supervisor_stt"),
            line("agent", "A table for two", 2000),
            line("agent", long, 6000),
            line("agent", "Thank you", 6500),  # the same speaker again: no overlap claimed
        ],
        30,
    )
    turns = merged["turns"]
    assert turns[0]["overlap_with_next"] is True
    assert turns[0]["end_ms"] == 1000  # the only end we know: when the callee began
    assert "overlap_with_next" not in turns[1]  # "Sorry?" fits in the second before the agent
    assert turns[1]["end_ms"] == 1000 + spoken_ms("Sorry?")
    assert "overlap_with_next" not in turns[3]
    assert turns[3]["end_ms"] == 6500
