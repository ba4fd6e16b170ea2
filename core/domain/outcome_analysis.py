"""Post-call analysis by a model: what it is asked, what a valid answer is, and how its
reading overrules an agent's claim.

The rule-based check (`outcome_check`) reads phrase lists; a model reads the whole call and
the brief, so it also catches a confirmation of something other than what was asked, or a
refusal worded in a way no list knows. Its answer is only advice until `reconcile` applies
the same asymmetry the rules do: only a claimed `booked` is ever overruled (an over-claim
harms the customer, an under-claim does not), and only when the model says the call
contradicts it, or reads another outcome with at least `threshold` confidence. With no
reading (no model configured, or it failed) the rules' verdict stands. Pure: the adapter
(`core.adapters.outcome_model`) does the I/O and hands over the parsed JSON.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from core.domain.bookings import OUTCOMES
from core.domain.outcome_check import Verdict

DEFAULT_THRESHOLD = 0.7
MAX_PROMPT_LINES = 400  # a 15-minute call is far below this; bounds the request size
_SPEAKERS = {"callee": "Venue", "agent": "Agent"}
_TEXT_FIELDS = ("date_time", "holder_name", "venue_name", "refusal_reason")


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """The model's structured reading of a call (the response schema's fields)."""

    outcome_type: str
    confidence: float
    contradicts_agent: bool
    date_time: str | None = None
    guests: int | None = None
    holder_name: str | None = None
    venue_name: str | None = None
    refusal_reason: str | None = None

    @classmethod
    def from_json(cls, data: object) -> Reading:
        """Validate a decoded JSON answer.

        Raises:
            ValueError: the answer is not an object of the schema's shape (a model can
                return anything; an invalid reading must not decide).
        """
        if not isinstance(data, Mapping):
            raise ValueError("the answer is not a JSON object")
        outcome = data.get("outcome_type")
        if outcome not in OUTCOMES:
            raise ValueError("outcome_type is missing or not a known outcome")
        confidence = data.get("confidence")
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise ValueError("confidence is missing or not a number")
        if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
            raise ValueError("confidence is outside 0..1")
        contradicts = data.get("contradicts_agent")
        if not isinstance(contradicts, bool):
            raise ValueError("contradicts_agent is missing or not a boolean")
        guests = data.get("guests")
        if guests is not None and (
            isinstance(guests, bool) or not isinstance(guests, int | float) or guests < 0
        ):
            raise ValueError("guests is not a count")
        texts: dict[str, str | None] = {}
        for name in _TEXT_FIELDS:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} is not a string")
            texts[name] = value.strip()[:200] or None if isinstance(value, str) else None
        return cls(
            outcome_type=str(outcome),
            confidence=float(confidence),
            contradicts_agent=contradicts,
            guests=int(guests) if guests is not None else None,
            **texts,
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def prompt(brief: str, transcript: Iterable[Any], claimed: str, task_kind: str) -> str:
    """The text the model reads: instructions, the brief, the claim, then the call's final
    lines labelled by speaker (the schema carries the answer's shape)."""
    lines = [
        f"{_SPEAKERS.get(str(line.get('speaker')), 'Other')}: {str(line.get('text')).strip()}"
        for line in transcript
        if isinstance(line, Mapping) and line.get("text") and line.get("final", True)
    ][-MAX_PROMPT_LINES:]
    calls = "\n".join(lines) or "(no line was transcribed)"
    return (
        "You check the outcome an AI phone agent reported after calling a venue for a "
        "customer. Read the call and decide what the venue actually agreed to.\n"
        f"Outcome types: {', '.join(OUTCOMES)}. Use booked only when the venue clearly "
        "confirmed the request (for a cancellation task: confirmed the cancellation); "
        "refused when it declined; alternative_offered when it proposed something else that "
        "was not accepted; needs_follow_up when the call ended without a clear answer (for "
        "example the venue hung up); failed when no real conversation happened.\n"
        "Set contradicts_agent to true when the conversation does not support the agent's "
        "claimed outcome. Fill date_time (ISO 8601 local, YYYY-MM-DDTHH:MM), guests, "
        "holder_name, venue_name and refusal_reason from what the venue said, or null. "
        "confidence is your certainty in outcome_type, from 0 to 1.\n\n"
        f"Task kind: {task_kind}\n"
        f"Customer's brief: {brief.strip()}\n"
        f"Agent's claimed outcome: {claimed}\n\n"
        f"Call transcript:\n{calls}\n"
    )


def reconcile(
    claimed: str, reading: Reading | None, rules: Verdict, *, threshold: float = DEFAULT_THRESHOLD
) -> Verdict:
    """The verdict the outcome is stored with: the model's when it answered, else the rules'.

    A `booked` claim is contradicted when the model says so, or reads another outcome with
    confidence ≥ `threshold`; nothing else is ever contradicted.
    """
    if reading is None:
        return rules
    other = reading.outcome_type != "booked" and reading.confidence >= threshold
    contradicts = claimed == "booked" and (reading.contradicts_agent or other)
    return Verdict(
        outcome=reading.outcome_type,
        confidence=reading.confidence,
        contradicts_agent=contradicts,
        reason=_reason(reading),
        source="model",
    )


def _reason(reading: Reading) -> str:
    said = f"the model read the call as {reading.outcome_type} ({reading.confidence:.2f})"
    if reading.contradicts_agent:
        said += ", not as the agent claimed"
    if reading.refusal_reason:
        said += f": {reading.refusal_reason!r}"
    return said
