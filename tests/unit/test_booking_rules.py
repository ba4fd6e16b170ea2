"""Which booking a call's outcome makes, and the booking-status filter."""

from __future__ import annotations

import datetime as dt

import pytest

from core.domain import bookings
from core.domain.bookings import BookingPlan
from core.domain.errors import CallagentError

PENDING = "pending_user_confirm"


@pytest.mark.parametrize(
    ("outcome", "kind", "plan"),
    [
        ("booked", "restaurant_booking", BookingPlan("active", "restaurant")),
        ("booked", "restaurant_cancel", BookingPlan("active", "restaurant")),
        ("alternative_offered", "doctor_appointment", BookingPlan(PENDING, "doctor")),
        ("needs_follow_up", "hotel_booking", BookingPlan(PENDING, "hotel")),
        ("refused", "concierge", BookingPlan("cancelled", "other")),
        ("failed", "restaurant_booking", None),
    ],
)
def test_outcome_to_booking(outcome: str, kind: str, plan: BookingPlan | None) -> None:
    assert bookings.booking_for(outcome, kind) == plan


def test_unknown_outcomes_count_as_failed_and_make_no_booking() -> None:
    assert bookings.outcome_kind("teleported") == "failed"
    assert bookings.outcome_kind("booked") == "booked"
    assert bookings.booking_for(bookings.outcome_kind("teleported"), "other") is None


def test_every_planned_booking_is_a_valid_row() -> None:
    for outcome in bookings.OUTCOMES:
        plan = bookings.booking_for(outcome, "restaurant_booking")
        if plan is not None:
            assert plan.status in bookings.STATUSES and plan.type in bookings.TYPES


def test_booking_dates() -> None:
    assert bookings.booking_date("") is None
    assert bookings.booking_date("next Tuesday-ish") is None
    assert bookings.booking_date("2030-06-14T19:00") == dt.datetime(2030, 6, 14, 19, 0)
    aware = dt.datetime(2030, 6, 14, 19, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    assert bookings.stored_date(aware) == dt.datetime(2030, 6, 14, 16, 0)
    assert bookings.stored_date(None) is None


def test_status_filter() -> None:
    assert bookings.check_status(None) is None and bookings.check_status("") is None
    assert bookings.check_status("active") == "active"
    with pytest.raises(CallagentError) as caught:
        bookings.check_status("lost")
    assert caught.value.reason == "INVALID_ARGUMENT_STATUS"
