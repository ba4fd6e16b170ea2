"""The rule-based post-call check, on the lines the simulated venues really say."""

from __future__ import annotations

import datetime

import pytest

from core.domain import outcome_check
from sim import scenario_files, venues
from sim.dialogue import Request

TODAY = datetime.date(2030, 6, 13)
ASK = Request(
    date=TODAY + datetime.timedelta(days=1), time=datetime.time(19, 0), guests=2, name="Anna"
).as_data()


def _call(number: str, *acts: tuple[str, dict[str, str]]) -> list[dict[str, object]]:
    """The transcript of a call to the venue behind `number`: its greeting, then for each
    agent act the agent's line and what the venue says back."""
    venue = scenario_files.venue_for(number)
    mind = venues.VenueMind(venue, TODAY)
    lines: list[dict[str, object]] = []
    for said in mind.opening():
        assert isinstance(said, venues.Say)
        lines.append({"speaker": "callee", "text": said.text, "final": True})
    for act, data in acts:
        lines.append({"speaker": "agent", "text": f"({act})", "final": True})
        for said in mind.hear(act, venue.language, data):
            if isinstance(said, venues.Say):
                lines.append({"speaker": "callee", "text": said.text, "final": True})
    return lines


@pytest.mark.parametrize("number", ["+15550100", "+15550108", "+15550109", "+15550150"])
def test_a_confirmed_booking_is_supported(number: str) -> None:
    lines = _call(number, ("request", ASK))
    verdict = outcome_check.check(lines, "booked")
    assert verdict.outcome == "booked", lines
    assert not verdict.contradicts_agent and verdict.confidence >= 0.9


def test_an_accepted_alternative_is_supported() -> None:
    lines = _call("+15550102", ("request", ASK), ("accept_offer", {}))
    assert "taken" in str(lines[-3]["text"])  # the offer read as a refusal, then confirmed
    assert outcome_check.check(lines, "booked").outcome == "booked"


def test_fully_booked_contradicts_a_claimed_booking() -> None:
    lines = _call("+15550101", ("request", ASK))
    verdict = outcome_check.check(lines, "booked")
    assert verdict.outcome == "refused" and verdict.contradicts_agent
    assert "fully booked" in verdict.reason


def test_a_hang_up_contradicts_a_claimed_booking() -> None:
    lines = _call("+15550107", ("request", ASK))
    verdict = outcome_check.check(lines, "booked")
    assert verdict.outcome == "needs_follow_up" and verdict.contradicts_agent
    assert "hung up" in verdict.reason


def test_a_callee_who_never_confirmed_does_not_support_booked() -> None:
    lines = _call("+15550100")  # the greeting only
    verdict = outcome_check.check(lines, "booked")
    assert verdict.contradicts_agent and verdict.confidence < 0.9


def test_a_refusal_the_agent_reports_is_not_contradicted() -> None:
    lines = _call("+15550101", ("request", ASK), ("refused_bye", {}))
    verdict = outcome_check.check(lines, "refused")
    assert verdict.outcome == "refused" and not verdict.contradicts_agent


def test_a_russian_refusal_and_a_cancellation() -> None:
    refusal = [{"speaker": "callee", "text": "Извините, у нас нет таких столов."}]
    assert outcome_check.check(refusal, "booked").outcome == "refused"
    cancel = _call("+15550100", ("request", {**ASK, "kind": "restaurant_cancel"}))
    assert outcome_check.check(cancel, "booked").outcome == "booked"


def test_no_callee_line_is_no_evidence() -> None:
    agent_only = [{"speaker": "agent", "text": "Booked, thank you!"}]
    verdict = outcome_check.check(agent_only, "booked")
    assert verdict.outcome == "unknown" and not verdict.contradicts_agent
