"""What the Gemini REST stand-in answers about a call: the world's truth, not a reading.

Core asks a model whether the venue really agreed to what the agent claims. The simulated
world need not guess: it knows what every venue said and meant (`Line.act`, `Line.data`).
The prompt carries the call's transcript, so the conversation is the one whose lines appear
in it (most lines matched wins; the newest on a tie, since identical calls say the same).
The venue's last decisive act decides: `confirm` → booked (with what was confirmed),
`refuse` → refused (with its reason), an `offer` never confirmed → alternative_offered,
anything else (a hang-up, no answer yet) → needs_follow_up. A prompt that matches no
conversation gets a low-confidence `needs_follow_up` that contradicts nothing.
"""

from __future__ import annotations

import re
from typing import Any

from sim.world import Conversation, World

_CLAIM = re.compile(r"claimed outcome:\s*([a-z_]+)", re.IGNORECASE)
_DECISIVE = {
    "confirm": "booked",
    "refuse": "refused",
    "offer": "alternative_offered",
    "hang_up_notice": "needs_follow_up",
}


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


class WorldOutcomes:
    """The `AnswerSource` of `sim.gemini_rest_server.FakeGeminiRest` in the simulated world."""

    def __init__(self, world: World) -> None:
        self._world = world

    def answer(self, prompt: str, schema: dict[str, Any] | None) -> dict[str, Any]:
        conv = self.conversation_in(prompt)
        claim = _CLAIM.search(prompt)
        claimed = claim.group(1).lower() if claim else None
        if conv is None:
            found: dict[str, Any] = {"outcome_type": "needs_follow_up", "confidence": 0.3}
            found["contradicts_agent"] = False
        else:
            found = self._truth(conv)
            found["contradicts_agent"] = claimed is not None and claimed != found["outcome_type"]
        fields = (schema or {}).get("properties")
        if isinstance(fields, dict):  # answer in the requested shape, as structured output does
            return {name: found.get(name) for name in fields}
        return found

    def conversation_in(self, prompt: str) -> Conversation | None:
        text = _norm(prompt)
        best: tuple[int, int] = (0, -1)
        chosen = None
        for order, conv in enumerate(self._world.known()):
            said = sum(1 for line in conv.lines if line.text and _norm(line.text) in text)
            score = (said, order)
            if said and score > best:
                best, chosen = score, conv
        return chosen

    @staticmethod
    def _truth(conv: Conversation) -> dict[str, Any]:
        outcome, data = "needs_follow_up", {}
        for line in conv.lines:
            if line.speaker == "venue" and line.act in _DECISIVE:
                outcome, data = _DECISIVE[line.act], line.data
        date, time = data.get("date"), data.get("time")
        guests = data.get("guests", "")
        return {
            "outcome_type": outcome,
            "date_time": f"{date}T{time}" if date and time and outcome == "booked" else None,
            "guests": int(guests) if guests.isdigit() else None,
            "holder_name": data.get("name") or None,
            "venue_name": conv.venue.name,
            "refusal_reason": data.get("reason") if outcome == "refused" else None,
            "confidence": 0.95,
        }
