"""The shipped venues, pinned field by field as they were when they lived in Python code, so
moving them into scenario files cannot change how any of them behaves."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from sim import scenario_files
from sim.venues import Answering, Booking, Manner

NOON, ELEVEN_PM = datetime.time(12, 0), datetime.time(23, 0)
BASE: dict[str, Any] = {
    "language": "en",
    "host": "Maria",
    "opens": NOON,
    "closes": ELEVEN_PM,
    "answering": Answering.HUMAN,
    "booking": Booking.AS_ASKED,
    "manner": Manner.POLITE,
    "max_party": 12,
    "offer_shift_min": 90,
    "refusal_reason": "we are fully booked that day",
    "ivr_digit": "1",
    # Added with the scenario files; their defaults keep today's behaviour.
    "closed_on": frozenset(),
    "ivr_prompt": None,
    "voicemail_greeting": None,
    "barge_in": None,
}


def pinned(number: str, name: str, story: str, **changes: Any) -> dict[str, Any]:
    return {**BASE, "number": number, "name": name, "story": story, **changes}


SHIPPED = {
    v["number"]: v
    for v in (
        pinned("+15550100", "Trattoria Roma", "books as asked"),
        pinned(
            "+15550101",
            "Le Petit Bistro",
            "fully booked: refuses with a reason",
            booking=Booking.FULLY_BOOKED,
            refusal_reason="we are fully booked that evening",
        ),
        pinned(
            "+15550102",
            "Sakura Garden",
            "the asked time is taken; offers 90 minutes later (the agent asks the customer)",
            host="Kenji",
            booking=Booking.OFFERS_OTHER_TIME,
        ),
        pinned("+15550103", "Busy Bee Cafe", "the line is busy", answering=Answering.BUSY),
        pinned("+15550104", "Night Owl Diner", "nobody answers", answering=Answering.NO_ANSWER),
        pinned(
            "+15550105",
            "Harbour Fish House",
            "voicemail: greeting, beep, AMD machine_end_beep",
            answering=Answering.VOICEMAIL,
        ),
        pinned(
            "+15550106",
            "Grand Hotel Central",
            "IVR menu: press 1 for reservations, then a person books as asked",
            host="Oliver",
            answering=Answering.IVR,
        ),
        pinned(
            "+15550107",
            "Quick Grill",
            "hangs up mid-call right after hearing the request",
            host="Sam",
            manner=Manner.HANGS_UP,
        ),
        pinned(
            "+15550108",
            "Пельменная №1",
            "speaks Russian only; books as asked",
            language="ru",
            host="Ольга",
        ),
        pinned(
            "+15550109",
            "Chatterbox Tapas",
            "talks over the agent (barge-in), then books as asked",
            host="Lola",
            manner=Manner.TALKS_OVER,
        ),
    )
}
DEFAULT = pinned("", "Corner Cafe", "any other number: books as asked", host="Alex")


def test_the_ten_venues_are_exactly_as_pinned() -> None:
    venues = scenario_files.shipped().venues
    assert {n: dataclasses.asdict(v) for n, v in venues.items()} == SHIPPED


def test_the_default_venue_is_as_pinned() -> None:
    assert dataclasses.asdict(scenario_files.shipped().default) == DEFAULT


def test_unknown_numbers_get_the_default_under_their_own_number() -> None:
    venue = scenario_files.venue_for("+15550150")
    assert dataclasses.asdict(venue) == {**DEFAULT, "number": "+15550150"}
