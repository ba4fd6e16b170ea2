"""The call state machine: which status may follow which. Pure; docs/calls.md explains it.

A transition to the same status is a no-op (providers repeat and reorder callbacks);
anything not listed here is illegal and is rejected, never silently applied.
"""

from __future__ import annotations

QUEUED = "queued"
SCHEDULED = "scheduled"
DIALING = "dialing"
RINGING = "ringing"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
BUSY = "busy"
NO_ANSWER = "no_answer"
FAILED = "failed"
CANCELLED = "cancelled"

TERMINAL = frozenset({COMPLETED, BUSY, NO_ANSWER, FAILED, CANCELLED})
# Counted against max_concurrent_calls.
IN_FLIGHT = frozenset({SCHEDULED, DIALING, RINGING, IN_PROGRESS})
ALL = frozenset({QUEUED, SCHEDULED, DIALING, RINGING, IN_PROGRESS}) | TERMINAL

ALLOWED: dict[str, frozenset[str]] = {
    QUEUED: frozenset({SCHEDULED, FAILED, CANCELLED}),
    # Carrier callbacks may overtake the create-call response, so a scheduled call can
    # jump ahead; scheduled → queued: a dialer died after claiming it but before dialing.
    SCHEDULED: frozenset(
        {DIALING, RINGING, IN_PROGRESS, COMPLETED, BUSY, NO_ANSWER, FAILED, CANCELLED, QUEUED}
    ),
    DIALING: frozenset({RINGING, IN_PROGRESS, COMPLETED, BUSY, NO_ANSWER, FAILED, CANCELLED}),
    RINGING: frozenset({IN_PROGRESS, COMPLETED, BUSY, NO_ANSWER, FAILED, CANCELLED}),
    IN_PROGRESS: frozenset({COMPLETED, FAILED, CANCELLED}),
    COMPLETED: frozenset(),
    BUSY: frozenset(),
    NO_ANSWER: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


def sources_of(target: str) -> list[str]:
    """Every status from which `target` may be entered (for compare-and-set updates)."""
    if target not in ALL:
        raise ValueError(f"unknown call status {target!r}")
    return sorted(source for source, targets in ALLOWED.items() if target in targets)


def is_allowed(source: str, target: str) -> bool:
    return target in ALLOWED.get(source, frozenset())
