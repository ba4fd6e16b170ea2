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
        ("booked", "restaurant_cancel", None),
        ("refused", "restaurant_cancel", None),
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


@pytest.mark.parametrize("ending", ["voicemail", "no_answer", "silence", "time_limit"])
def test_cut_short_calls_leave_no_booking_unless_the_venue_confirmed_one(ending: str) -> None:
    for outcome in ("needs_follow_up", "alternative_offered", "refused", "failed"):
        assert bookings.booking_for(outcome, "restaurant_booking", ending) is None
    confirmed = bookings.booking_for("booked", "restaurant_booking", ending)
    assert confirmed == BookingPlan("active", "restaurant")


def test_other_endings_keep_their_booking() -> None:
    assert bookings.booking_for("needs_follow_up", "hotel_booking", "hold") == BookingPlan(
        PENDING, "hotel"
    )


def test_only_a_successful_cancellation_cancels() -> None:
    assert bookings.cancels_booking("booked", "restaurant_cancel")
    assert not bookings.cancels_booking("refused", "restaurant_cancel")
    assert not bookings.cancels_booking("booked", "restaurant_booking")


def test_ending_reported_or_seen_by_core() -> None:
    assert bookings.ending_of("time_limit") == "time_limit"
    assert bookings.ending_of("", call_status="no_answer") == "no_answer"
    assert bookings.ending_of("", decisions=[{"kind": "voicemail"}]) == "voicemail"
    assert bookings.ending_of("", signals=["ivr_menu", "voicemail"]) == "voicemail"
    assert bookings.ending_of("", decisions=[{"kind": "hold"}], signals=["ivr_menu"]) == ""
    assert bookings.ending_of("made-up", call_status="completed") == ""


NOW = dt.datetime(2030, 6, 14, 19, 0)


def _open(booking_id: str, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "booking_id": booking_id,
        "status": "active",
        "target_phone": "+15550100",
        "booking_holder_name": "Anna",
        "booking_local_time": NOW,
        "booking_date": NOW,
    }
    return {**row, **over}


def test_cancellation_matches_phone_name_and_time() -> None:
    rows = [
        _open("other-venue", target_phone="+15550101"),
        _open("other-name", booking_holder_name="Boris"),
        _open("other-time", booking_local_time=NOW + dt.timedelta(hours=1)),
        _open("done", status="cancelled"),
        _open("match", booking_holder_name="  anna "),
        _open("older-match"),
    ]
    want = bookings.CancelRequest("+15550100", holder_name="ANNA", local_time=NOW)
    assert bookings.cancellation_target(rows, want) == "match"


def test_cancellation_by_id_must_be_open() -> None:
    rows = [_open("a"), _open("b", status="past")]
    assert bookings.cancellation_target(rows, bookings.CancelRequest("+1", booking_id="a")) == "a"
    assert bookings.cancellation_target(rows, bookings.CancelRequest("+1", booking_id="b")) is None


def test_cancellation_without_a_match_cancels_nothing() -> None:
    want = bookings.CancelRequest("+15550199", holder_name="Anna")
    assert bookings.cancellation_target([_open("a")], want) is None


def test_spoken_language() -> None:
    assert bookings.spoken_language("auto", "ru") == "ru"
    assert bookings.spoken_language("en", "") == "en"
    assert bookings.spoken_language("auto", "", ["Здравствуйте, это ИИ"]) == "ru"
    assert bookings.spoken_language("auto", "xx", ["Hello there"]) == "en"
    assert bookings.spoken_language("auto") == "auto"


def test_contact_phone() -> None:
    assert bookings.contact_phone("+15550100") == "+15550100"
    assert bookings.contact_phone("+15550100", "+44 20 7946 0958") == "+442079460958"
    assert bookings.contact_phone("+15550100", "call Maria") == "+15550100"


def test_status_filter() -> None:
    assert bookings.check_status(None) is None and bookings.check_status("") is None
    assert bookings.check_status("active") == "active"
    with pytest.raises(CallagentError) as caught:
        bookings.check_status("lost")
    assert caught.value.reason == "INVALID_ARGUMENT_STATUS"
