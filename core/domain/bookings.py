"""Bookings as rules: their statuses and types, and which booking a call's outcome makes.

The voice agent ends a call with an outcome (`booked`, `refused`, …). Whether that
outcome becomes a booking, with which status, and of which type (from the task's kind)
is decided here, so the mapping is one table a reader can check against docs/calls.md
and a unit test can pin without a database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

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


def booking_for(outcome: str, task_kind: str) -> BookingPlan | None:
    """The booking a call with this outcome and task kind makes, or None."""
    status = _BOOKING_STATUS.get(outcome)
    if status is None:
        return None
    return BookingPlan(status=status, type=_BOOKING_TYPE.get(task_kind, "other"))


def booking_date(text: str) -> dt.datetime | None:
    """The agent's ISO date-time, or None when it gave none or an unparseable one."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        log.warning("unparseable booking date-time from the agent")
        return None


def stored_date(when: dt.datetime | None) -> dt.datetime | None:
    """Booking dates are stored as naive UTC."""
    if when is not None and when.tzinfo is not None:
        return when.astimezone(dt.UTC).replace(tzinfo=None)
    return when
