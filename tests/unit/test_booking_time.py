"""A booking's time: the venue's zone, and its local wall time as true UTC."""

from __future__ import annotations

import datetime as dt

from core.domain import booking_time
from core.domain.booking_time import BookingTime


def test_zone_explicit_then_number_then_utc() -> None:
    assert booking_time.venue_zone("+12125551234", "Europe/Berlin") == "Europe/Berlin"
    assert booking_time.venue_zone("+12125551234", "Mars/Olympus") == "America/New_York"
    assert booking_time.venue_zone("+37441467478") == "Asia/Yerevan"
    assert booking_time.venue_zone("+15550100") == "UTC"  # fictional: no real area
    assert booking_time.venue_zone("+79161234567") == "UTC"  # a country of many zones
    assert booking_time.venue_zone("not a number") == "UTC"


def test_only_real_zones_are_zones() -> None:
    assert booking_time.valid_zone(" Europe/Berlin ") == "Europe/Berlin"
    for bad in ("Europe", "Etc", "/etc/passwd", "a/../b", "zone.tab", "", None, 3):
        assert booking_time.valid_zone(bad) is None


def test_local_wall_time_becomes_true_utc() -> None:
    summer = booking_time.booking_time("2030-06-14T19:00", "America/New_York")
    assert summer == BookingTime(
        local=dt.datetime(2030, 6, 14, 19, 0),
        zone="America/New_York",
        utc=dt.datetime(2030, 6, 14, 23, 0),
    )
    winter = booking_time.booking_time("2030-01-14T19:00", "America/New_York")
    assert winter is not None and winter.utc == dt.datetime(2030, 1, 15, 0, 0)
    yerevan = booking_time.booking_time("2030-06-14T19:00", "Asia/Yerevan")
    assert yerevan is not None and yerevan.utc == dt.datetime(2030, 6, 14, 15, 0)


def test_utc_fallback_keeps_the_wall_time() -> None:
    kept = booking_time.booking_time("2030-06-14T19:00", "UTC")
    assert kept is not None and kept.local == kept.utc == dt.datetime(2030, 6, 14, 19, 0)


def test_an_explicit_offset_is_that_instant() -> None:
    got = booking_time.booking_time("2030-06-14T19:00+03:00", "America/New_York")
    assert got is not None
    assert got.utc == dt.datetime(2030, 6, 14, 16, 0)
    assert got.local == dt.datetime(2030, 6, 14, 12, 0)


def test_dst_gap_resolves_forward() -> None:
    # 02:30 does not exist in New York on 2030-03-10; fold=0 reads it with the EST offset
    got = booking_time.booking_time("2030-03-10T02:30", "America/New_York")
    assert got is not None and got.utc == dt.datetime(2030, 3, 10, 7, 30)


def test_missing_or_garbled_times() -> None:
    assert booking_time.booking_time("", "UTC") is None
    assert booking_time.booking_time(None, "UTC") is None
    assert booking_time.booking_time("next Tuesday-ish", "UTC") is None


def test_local_time_from_skill_inputs() -> None:
    slots = {"date": "2030-06-14", "time": "19:00"}
    assert booking_time.local_from_slots(slots) == dt.datetime(2030, 6, 14, 19, 0)
    assert booking_time.local_from_slots({"date": "2030-06-14"}) == dt.datetime(2030, 6, 14)
    assert booking_time.local_from_slots({"time": "19:00"}) is None
    assert booking_time.local_from_slots({"date": "soon"}) is None
