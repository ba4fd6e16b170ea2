"""The call state machine: which status may follow which. Pure; docs/calls.md explains it.

A transition to the same status is a no-op (providers repeat and reorder callbacks);
anything not listed here is illegal and is rejected, never silently applied.
"""

from __future__ import annotations

from typing import Literal

from core.domain.errors import CallagentError

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

# In the order the docs and the skill manifests list them.
TERMINAL_IN_ORDER = (COMPLETED, BUSY, NO_ANSWER, FAILED, CANCELLED)
TERMINAL = frozenset(TERMINAL_IN_ORDER)
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


def should_apply(current: str, target: str) -> bool:
    """True to apply `current → target`, False for a repeat (same status, a no-op).

    Raises:
        CallagentError: ILLEGAL_TRANSITION when the machine forbids the change.
    """
    if current == target:
        return False
    if not is_allowed(current, target):
        raise CallagentError(
            "ILLEGAL_TRANSITION", f"a {current} call cannot become {target}", status=current
        )
    return True


def settlement(target: str) -> Literal["capture", "release"] | None:
    """What entering `target` does to the call's credit reservation: a completed call pays
    for what it used, any other end gives the whole hold back, a live status keeps it."""
    if target == COMPLETED:
        return "capture"
    if target in TERMINAL:
        return "release"
    return None


def on_carrier_completed(status: str, *, media_attached: bool, reported: bool) -> str | None:
    """What the carrier's `completed` does to a call: COMPLETED (charged), FAILED (nothing
    charged), or None to wait for media's outcome.

    Media reports an outcome before it closes a call's session, whatever ended the call. A
    call it attached to that the carrier ends with no outcome stored has its report on the
    way (milliseconds behind, or replayed by a session re-attaching after a core restart) or
    has lost its media pod, whose calls the carrier ends as their streams close. Charging at
    once would bill a call whose agent vanished; so it waits, and settles when the outcome
    lands (completed, charged) or when the session is found lost (failed, released).

    A call answered (Twilio's `completed` means answered) that no media session ever
    attached to had no agent on it: its stream was refused (a draining media pod) or media
    could not reach core. It fails, and nothing is charged. A call already over is left to
    the state machine (COMPLETED: a repeat or a stale status).
    """
    if status in TERMINAL or reported:
        return COMPLETED
    return None if media_attached else FAILED
