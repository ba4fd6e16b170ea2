"""The model classifier's rules: which answers are valid, and when its reading overrules."""

from __future__ import annotations

from typing import Any

import pytest

from core.domain import outcome_analysis, outcome_check
from core.domain.outcome_analysis import Reading

RULES_BOOKED = outcome_check.Verdict("booked", 0.9, False, "the callee confirmed: 'See you'")
RULES_REFUSED = outcome_check.Verdict("refused", 0.9, True, "the callee refused: 'fully booked'")


def _reading(**fields: Any) -> dict[str, Any]:
    return {"outcome_type": "booked", "confidence": 0.9, "contradicts_agent": False, **fields}


def test_a_valid_answer_is_read_with_its_details() -> None:
    reading = Reading.from_json(
        _reading(
            outcome_type="refused",
            guests=2,
            refusal_reason=" we are fully booked ",
            date_time=None,
            venue_name="Le Petit Bistro",
        )
    )
    assert reading.outcome_type == "refused" and reading.guests == 2
    assert reading.refusal_reason == "we are fully booked"
    assert reading.venue_name == "Le Petit Bistro" and reading.date_time is None


@pytest.mark.parametrize(
    "answer",
    [
        [],
        "booked",
        _reading(outcome_type="maybe"),
        _reading(outcome_type=None),
        _reading(confidence=1.5),
        _reading(confidence=-0.1),
        _reading(confidence="high"),
        _reading(confidence=True),
        _reading(confidence=float("nan")),
        _reading(contradicts_agent="no"),
        {"outcome_type": "booked", "confidence": 0.9},
        _reading(guests="two"),
        _reading(guests=-1),
        _reading(holder_name=7),
    ],
)
def test_an_answer_not_of_the_schema_is_invalid(answer: object) -> None:
    with pytest.raises(ValueError):
        Reading.from_json(answer)


def test_without_a_reading_the_rules_decide() -> None:
    assert outcome_analysis.reconcile("booked", None, RULES_REFUSED) is RULES_REFUSED


def test_a_confirmed_booking_stands_even_where_the_rules_doubt_it() -> None:
    verdict = outcome_analysis.reconcile("booked", Reading.from_json(_reading()), RULES_REFUSED)
    assert not verdict.contradicts_agent
    assert verdict.outcome == "booked" and verdict.source == "model"


def test_a_booked_claim_the_model_says_is_contradicted_is_overruled() -> None:
    reading = Reading.from_json(
        _reading(outcome_type="needs_follow_up", confidence=0.2, contradicts_agent=True)
    )
    verdict = outcome_analysis.reconcile("booked", reading, RULES_BOOKED)
    assert verdict.contradicts_agent and verdict.source == "model"
    assert verdict.outcome == "needs_follow_up"


def test_another_outcome_overrules_from_the_threshold_up() -> None:
    refused = Reading.from_json(
        _reading(outcome_type="refused", confidence=0.7, refusal_reason="fully booked")
    )
    verdict = outcome_analysis.reconcile("booked", refused, RULES_BOOKED, threshold=0.7)
    assert verdict.contradicts_agent and "fully booked" in verdict.reason
    unsure = Reading.from_json(_reading(outcome_type="refused", confidence=0.69))
    assert not outcome_analysis.reconcile("booked", unsure, RULES_BOOKED).contradicts_agent


@pytest.mark.parametrize("claimed", ["refused", "needs_follow_up", "failed", "alternative_offered"])
def test_only_a_booked_claim_is_ever_overruled(claimed: str) -> None:
    reading = Reading.from_json(_reading(outcome_type="booked", contradicts_agent=True))
    assert not outcome_analysis.reconcile(claimed, reading, RULES_BOOKED).contradicts_agent


def test_the_prompt_labels_speakers_and_names_the_claim() -> None:
    transcript = [
        {"speaker": "callee", "text": "Le Petit Bistro, good evening.", "final": True},
        {"speaker": "agent", "text": "A table for 2 tomorrow at 19:00?", "final": True},
        {"speaker": "callee", "text": "half a sent", "final": False},
        "not a line",
    ]
    text = outcome_analysis.prompt("Table for 2 under Anna", transcript, "booked", "restaurant")
    assert "Venue: Le Petit Bistro, good evening." in text
    assert "Agent: A table for 2 tomorrow at 19:00?" in text
    assert "half a sent" not in text
    assert "Agent's claimed outcome: booked" in text and "Table for 2 under Anna" in text
