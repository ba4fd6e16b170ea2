"""Bookings as rules: their statuses and types, and what a call's outcome does to them.

The voice agent ends a call with an outcome (`booked`, `refused`, …). Whether that
outcome becomes a booking, with which status, and of which type (from the task's kind);
whether it instead cancels an existing booking (a cancellation task that succeeded); and
which endings leave nothing behind (voicemail, no answer, silence, the time limit) is
decided here, so the mapping is one table a reader can check against docs/bookings.md
and a unit test can pin without a database. The time rules live in `booking_time`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core.domain.errors import CallagentError

log = logging.getLogger(__name__)

STATUSES = ("active", "pending_user_confirm", "past", "cancelled")
TYPES = ("restaurant", "doctor", "hotel", "other")
OUTCOMES = ("booked", "refused", "alternative_offered", "needs_follow_up", "failed")

# Outcome → status of the booking it makes; outcomes not listed make none.
_BOOKING_STATUS = {
    "booked": "active",
    "alternative_offered": "pending_user_confirm",
    "needs_follow_up": "pending_user_confirm",
    "refused": "cancelled",
}
# Task kind → booking type; other kinds make bookings of type `other`.
_BOOKING_TYPE = {
    "restaurant_booking": "restaurant",
    "restaurant_cancel": "restaurant",
    "doctor_appointment": "doctor",
    "hotel_booking": "hotel",
}
# How a call ended, as media reports it ("" for an ordinary end_call). A call that ended at a
# machine, with nobody on the line, or cut short by the time limit leaves no booking unless
# the agent reports one the venue confirmed (`booked`).
ENDINGS = ("", "voicemail", "no_answer", "silence", "time_limit", "hold", "agent_repeating")
NO_BOOKING_ENDINGS = frozenset({"voicemail", "no_answer", "silence", "time_limit"})
# Bookings a cancellation may cancel, and bookings that turn `past` once their time is gone.
OPEN_STATUSES = ("active", "pending_user_confirm")
LANGUAGES = ("en", "ru")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z]")


@dataclasses.dataclass(frozen=True, slots=True)
class BookingPlan:
    """The booking an outcome makes: its status and type."""

    status: str
    type: str


def check_status(status: str | None) -> str | None:
    """A status filter: None for none, else one of STATUSES.

    Raises:
        CallagentError: INVALID_ARGUMENT_STATUS for any other value.
    """
    if status in (None, ""):
        return None
    if status not in STATUSES:
        raise CallagentError(
            "INVALID_ARGUMENT_STATUS",
            f"unknown booking status {status!r}; allowed values: {', '.join(STATUSES)}",
        )
    return status


def outcome_kind(reported: str) -> str:
    """The agent's outcome, with anything unknown counted as `failed`."""
    return reported if reported in OUTCOMES else "failed"


def is_cancellation(task_kind: str) -> bool:
    """A task that cancels a booking (`restaurant_cancel`, any `*_cancel`) never makes one."""
    return task_kind.endswith("_cancel")


def ending_of(
    reported: str,
    *,
    call_status: str = "",
    decisions: Iterable[Any] = (),
    signals: Iterable[str] = (),
) -> str:
    """How the call ended: media's report when it gives one, else what core saw on the call
    (an unanswered call's status; a voicemail the supervisor or the agent noticed)."""
    if reported in ENDINGS and reported:
        return reported
    if call_status == "no_answer":
        return "no_answer"
    kinds = {d.get("kind") for d in decisions if isinstance(d, Mapping)}
    if "voicemail" in kinds or "voicemail" in set(signals):
        return "voicemail"
    return ""


def booking_for(outcome: str, task_kind: str, ending: str = "") -> BookingPlan | None:
    """The booking a call with this outcome, task kind and ending makes, or None.

    A cancellation task makes none (success cancels the matching booking instead:
    `cancels_booking`). Voicemail, no-answer, silence and time-limit endings make none
    unless the agent reports the venue confirmed a booking.
    """
    if is_cancellation(task_kind):
        return None
    if ending in NO_BOOKING_ENDINGS and outcome != "booked":
        return None
    status = _BOOKING_STATUS.get(outcome)
    if status is None:
        return None
    return BookingPlan(status=status, type=_BOOKING_TYPE.get(task_kind, "other"))


def cancels_booking(outcome: str, task_kind: str) -> bool:
    """A cancellation task whose outcome is success (`booked`: the venue confirmed it)."""
    return is_cancellation(task_kind) and outcome == "booked"


@dataclasses.dataclass(frozen=True, slots=True)
class CancelRequest:
    """What identifies the booking to cancel; empty fields do not narrow the match."""

    target_phone: str
    booking_id: str = ""
    holder_name: str = ""
    local_time: dt.datetime | None = None


def _name(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()


def cancellation_target(
    candidates: Sequence[Mapping[str, Any]], request: CancelRequest
) -> str | None:
    """The booking a successful cancellation cancels, or None when none matches.

    `candidates` are the customer's open (active / pending) bookings, newest first. A
    `booking_id` names the booking outright (it must still be open). Otherwise a booking
    matches on the venue's number and, when the request gives them, the holder's name
    (case- and space-insensitive) and the local wall time; the newest match wins.
    """
    open_ones = [c for c in candidates if c.get("status") in OPEN_STATUSES]
    if request.booking_id:
        found = next((c for c in open_ones if c.get("booking_id") == request.booking_id), None)
        return str(found["booking_id"]) if found is not None else None
    for c in open_ones:
        if c.get("target_phone") != request.target_phone:
            continue
        if request.holder_name and _name(c.get("booking_holder_name")) != _name(
            request.holder_name
        ):
            continue
        if request.local_time is not None:
            local = c.get("booking_local_time") or c.get("booking_date")
            if local != request.local_time:
                continue
        return str(c["booking_id"])
    return None


def spoken_language(requested: str, reported: str = "", transcript: Iterable[str] = ()) -> str:
    """The language the call was held in: the agent's report, else the requested one when
    it is not `auto`, else the script of the agent's words (Cyrillic → ru, Latin → en),
    else the requested value."""
    if reported in LANGUAGES:
        return reported
    if requested in LANGUAGES:
        return requested
    text = " ".join(transcript)
    cyrillic, latin = len(_CYRILLIC.findall(text)), len(_LATIN.findall(text))
    if cyrillic or latin:
        return "ru" if cyrillic > latin else "en"
    return requested


def contact_phone(target_phone: str, reported: str = "") -> str:
    """The number to call about the booking: one the venue gave on the call (E.164), else
    the venue's number that was dialled."""
    compact = re.sub(r"[\s\-().]", "", reported or "")
    if re.fullmatch(r"\+[1-9]\d{6,14}", compact):
        return compact
    return target_phone
