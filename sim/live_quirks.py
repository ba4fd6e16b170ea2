"""Gemini Live's awkward behaviour in the stand-in, switched on per venue or per test.

A real Live connection is cut by the server: planned, with `goAway{timeLeft}` a while before
(connections last about ten minutes), or by an error close with Google's reason (1007 invalid
argument, 1008 policy, 1011 internal error or unavailable). The adapter must resume the first
and the retryable errors without losing a turn, and fail the call clearly on the others; these
switches put such cuts into world-driven calls at a chosen model turn, so a scenario file
(`[gemini]` table, docs/simulator.md) or a test (`SimAgents(quirks=...)`) can turn them on.
`cancel_tools_on_barge_in` is the real server's default: a barge-in withdraws the
NON_BLOCKING function calls of the interrupted turn with `toolCallCancellation`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# The reasons Google sends with each error close (as seen in field reports of the Live API).
CLOSE_REASONS = {
    1007: "Request contains an invalid argument.",
    1008: "Operation is not implemented, or supported, or enabled.",
    1011: "Internal error encountered.",
}


@dataclasses.dataclass(frozen=True, slots=True)
class LiveQuirks:
    """When the stand-in cuts a call's connection; turns count the model's finished turns of
    the call (across its connections), and each cut happens once per call."""

    go_away_after_turn: int | None = None
    go_away_time_left_s: float = 2.0
    close_after_turn: int | None = None
    close_code: int = 1011
    cancel_tools_on_barge_in: bool = True

    @property
    def close_reason(self) -> str:
        return CLOSE_REASONS.get(self.close_code, CLOSE_REASONS[1011])

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> LiveQuirks:
        """A scenario file's `[gemini]` table (already checked against the schema)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in table.items() if k in fields})
