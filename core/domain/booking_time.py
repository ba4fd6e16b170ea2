"""When a booking is: the venue's local wall time, its time zone, and the true UTC instant.

The agent reports the agreed time as the venue says it, a local wall time ("2030-06-14T19:00").
The booking stores that wall time and the zone it was read in, and `booking_date` as naive
UTC (the contract's "UTC, naive"). The zone is chosen in this order:

1. an explicit IANA zone (`venue_timezone` in a skill's input), when it names a real zone;
2. the venue's number: `phonenumbers`' time-zone table, when it gives exactly one zone
   (+1 212 … is America/New_York, +374 … is Asia/Yerevan);
3. otherwise UTC, with the local wall time kept as reported. This covers numbers whose
   country spans several zones (+7 mobile numbers) and the simulated world's fictional
   +1 555 01xx numbers, which belong to no real area.

A date-time the agent gives with an explicit offset is that instant, whatever the zone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import zoneinfo

import phonenumbers
from phonenumbers import timezone as phone_timezone

log = logging.getLogger(__name__)

FALLBACK_ZONE = "UTC"
_UNKNOWN_ZONE = "Etc/Unknown"


@dataclasses.dataclass(frozen=True, slots=True)
class BookingTime:
    """The agreed time: `local` wall time at the venue, its `zone`, and `utc` (both naive)."""

    local: dt.datetime
    zone: str
    utc: dt.datetime


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_zone(name: object) -> str | None:
    """`name` when it is an IANA zone the time-zone database has, else None."""
    if not isinstance(name, str):
        return None
    return name.strip() if name.strip() in _zones() else None


def zone_of_number(phone: str) -> str | None:
    """The one time zone of an E.164 number, or None when unknown or ambiguous."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    zones = [z for z in phone_timezone.time_zones_for_number(number) if z != _UNKNOWN_ZONE]
    if len(zones) != 1:
        return None
    return valid_zone(zones[0])


def venue_zone(phone: str, explicit: str | None = None) -> str:
    """The venue's zone: the explicit one if valid, else the number's single zone, else UTC."""
    return valid_zone(explicit) or zone_of_number(phone) or FALLBACK_ZONE


def parse_local(text: str | None) -> dt.datetime | None:
    """The agent's ISO 8601 date-time (or date), or None when missing or unparseable."""
    if not text or not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        log.warning("unparseable booking date-time from the agent")
        return None


def booking_time(text: str | None, zone: str) -> BookingTime | None:
    """The agreed time read in `zone`; None when the agent gave none or an unparseable one.

    A wall time in a DST gap or fold resolves as zoneinfo does (fold=0: the earlier instant).
    """
    when = parse_local(text)
    if when is None:
        return None
    tz = zoneinfo.ZoneInfo(zone)
    if when.tzinfo is None:
        aware = when.replace(tzinfo=tz)
    else:
        aware = when
        when = when.astimezone(tz).replace(tzinfo=None)
    utc = aware.astimezone(dt.UTC).replace(tzinfo=None)
    return BookingTime(local=when, zone=zone, utc=utc)


def local_from_slots(slots: dict[str, object]) -> dt.datetime | None:
    """The wall time a skill's `date` + `time` inputs name (e.g. a cancellation's), or None."""
    date, time = slots.get("date"), slots.get("time")
    if not isinstance(date, str) or not date:
        return None
    text = f"{date}T{time}" if isinstance(time, str) and time else date
    return parse_local(text)
