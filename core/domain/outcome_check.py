"""Post-call analysis, rule-based: does what the callee said support the agent's claim?

The agent ends a call with `end_call` and its arguments become the outcome; nothing in them
is checked against the conversation. A claimed `booked` is what creates an `active` booking,
so that is the claim worth checking: this module reads the call's final transcript (the
callee's lines) and says whether the venue confirmed, refused or hung up. It is deliberately
simple (phrase lists in English and Russian, the last decisive callee line wins), pure and
deterministic, so it runs with no model and a unit test can pin it. A refused or unclear call
the agent reports pessimistically is never overruled: only an over-claim harms the customer.

With no callee line at all there is nothing to judge (the ear was off, or the report came
without a transcript): the verdict is `unknown` and never contradicts the agent.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

# A line that refuses is checked first: "fully booked" must not read as "booked".
_REFUSAL = re.compile(
    r"fully booked|no (?:free )?tables?|nothing (?:is )?(?:free|available)|not available|"
    r"can'?t|cannot|unable|we are closed|we're closed|only open|is taken|are taken|"
    r"all booked|no availability|no room|"
    r"всё занято|все занято|нет (?:свободных )?(?:мест|столов|столиков|таких столов)|"
    r"мест нет|не можем|не получится|мы закрыты|мы работаем с",
    re.IGNORECASE,
)
_HANG_UP = re.compile(
    r"take another call|have to go|hang up|hanging up|call (?:you )?back later|"
    r"кладу трубку|перезвоните|мне пора",
    re.IGNORECASE,
)
_CONFIRM = re.compile(
    r"\bbooked\b|\bconfirmed\b|\breserved\b|see you|all set|you'?re booked|"
    r"\bcancell?ed\b|it'?s done|"
    r"забронировал|записал|подтвержда|ждём вас|ждем вас|до встречи|отменил",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What the transcript supports.

    `outcome` is the classifier's own reading: `booked` (the callee confirmed), `refused`,
    `needs_follow_up` (hung up, or never confirmed) or `unknown` (no callee line to read).
    `contradicts_agent` is true when the agent claimed `booked` and the transcript does not
    support it; `reason` quotes the deciding line for the decision log.
    """

    outcome: str
    confidence: float
    contradicts_agent: bool
    reason: str
    source: str = "rules"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _callee_lines(transcript: Iterable[Any]) -> list[str]:
    return [
        str(line.get("text") or "").strip()
        for line in transcript
        if isinstance(line, Mapping) and line.get("speaker") == "callee" and line.get("text")
    ]


def _reading(text: str) -> str | None:
    """One callee line's signal: refused, hung_up, confirmed, or None (neutral)."""
    if _REFUSAL.search(text):
        return "refused"
    if _HANG_UP.search(text):
        return "hung_up"
    if _CONFIRM.search(text):
        return "confirmed"
    return None


def check(transcript: Iterable[Any], claimed: str) -> Verdict:
    """Classify the call from its final transcript lines and compare with `claimed`."""
    lines = _callee_lines(transcript)
    if not lines:
        return Verdict("unknown", 0.0, False, "no callee line to check the outcome against")
    last: tuple[str, str] | None = None
    for text in lines:
        signal = _reading(text)
        if signal is not None:
            last = (signal, text)
    if last is None:
        outcome, confidence = "needs_follow_up", 0.6
        reason = "the callee never confirmed a booking"
    else:
        signal, text = last
        outcome = {"confirmed": "booked", "refused": "refused", "hung_up": "needs_follow_up"}[
            signal
        ]
        confidence = 0.9
        said = {"confirmed": "confirmed", "refused": "refused", "hung_up": "hung up"}[signal]
        reason = f"the callee {said}: {text[:160]!r}"
    contradicts = claimed == "booked" and outcome != "booked"
    return Verdict(outcome, confidence, contradicts, reason)
