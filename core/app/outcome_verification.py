"""Post-call analysis as a use case: ask the model about a claimed `booked`, or let the
rules decide.

Only a `booked` claim can be overruled, so only that claim costs a model call, and only
when the callee said something (with no callee line there is nothing to judge and the rules'
`unknown` stands, as before). The model is read *before* the outcome's transaction, so no
row lock is held while it thinks; any failure (`ProviderError`: timeout, HTTP, invalid
answer) is logged with its safe reason and the rules decide. `core.domain.outcome_analysis`
holds the reconcile rule; the adapter is `core.adapters.outcome_model`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from common.errors import ProviderError
from core.domain import outcome_analysis, outcome_check
from core.domain.outcome_analysis import Reading

log = logging.getLogger(__name__)


class OutcomeReader(Protocol):
    """A model that reads a call (`core.adapters.outcome_model.OutcomeModel`)."""

    async def read(self, prompt: str) -> Reading:
        """Raises: ProviderError when no valid reading came back."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Analyst:
    """The configured model and the confidence at which its reading overrules."""

    reader: OutcomeReader
    threshold: float = outcome_analysis.DEFAULT_THRESHOLD


@dataclasses.dataclass(frozen=True, slots=True)
class ModelAnswer:
    """What the model said before the transaction: a reading, or why there is none."""

    reading: Reading | None
    fallback: str | None = None


async def ask_model(
    analyst: Analyst | None,
    *,
    call_id: str,
    claimed: str,
    brief: str,
    task_kind: str,
    transcript: Sequence[Any],
) -> ModelAnswer | None:
    """The model's reading of a claimed `booked`; None when the model is not asked."""
    if analyst is None or claimed != "booked":
        return None
    if outcome_check.check(transcript, claimed).outcome == "unknown":
        return None
    text = outcome_analysis.prompt(brief, transcript, claimed, task_kind)
    try:
        return ModelAnswer(await analyst.reader.read(text))
    except ProviderError as err:
        log.warning(
            "outcome model gave no reading; the rules decide",
            extra={"call_id": call_id, "reason": err.message},
        )
        return ModelAnswer(None, fallback=err.message)


def verdict(
    claimed: str,
    transcript: Sequence[Any],
    answer: ModelAnswer | None,
    analyst: Analyst | None,
) -> tuple[outcome_check.Verdict, dict[str, Any]]:
    """The verdict to store and its record (the verdict, plus the model's reading or the
    reason it fell back to the rules)."""
    rules = outcome_check.check(transcript, claimed)
    reading = answer.reading if answer is not None else None
    threshold = analyst.threshold if analyst is not None else outcome_analysis.DEFAULT_THRESHOLD
    decided = outcome_analysis.reconcile(claimed, reading, rules, threshold=threshold)
    record = decided.as_dict()
    if reading is not None:
        record["reading"] = reading.as_dict()
    if answer is not None and answer.fallback is not None:
        record["model_fallback"] = answer.fallback
    return decided, record
