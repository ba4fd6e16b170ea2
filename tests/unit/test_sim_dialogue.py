"""How the simulated world reads a booking out of a brief and says it aloud."""

from __future__ import annotations

import datetime

import pytest

from sim import dialogue
from sim.dialogue import Request

TODAY = datetime.date(2025, 5, 1)  # a Thursday


@pytest.mark.parametrize(
    ("brief", "slots", "expected"),
    [
        (
            "Table for 2 tomorrow at 19:00 under Anna",
            {},
            Request(datetime.date(2025, 5, 2), datetime.time(19), 2, "Anna"),
        ),
        (
            "Столик на 3 завтра в 20:30 на имя Иван",
            {},
            Request(datetime.date(2025, 5, 2), datetime.time(20, 30), 3, "Иван"),
        ),
        (
            "Dinner for two at 7pm, name: Bob",
            {},
            Request(TODAY, datetime.time(19), 2, "Bob"),
        ),
        (
            "A table on friday at 8:15 pm for 6 people",
            {},
            Request(datetime.date(2025, 5, 2), datetime.time(20, 15), 6, None),
        ),
        (
            "Book it, details below",
            {"date": "2025-06-01", "time": "18:00", "party_size": "5", "holder_name": "Zoe"},
            Request(datetime.date(2025, 6, 1), datetime.time(18), 5, "Zoe"),
        ),
        (
            "Table for 2 tomorrow at 19:00 under Anna",
            {"guests": 4, "time": "20:00"},  # slots win over the text
            Request(datetime.date(2025, 5, 2), datetime.time(20), 4, "Anna"),
        ),
        ("Please call them", {}, Request()),
    ],
)
def test_parse_request(brief: str, slots: dict[str, object], expected: Request) -> None:
    assert dialogue.parse_request(brief, slots, today=TODAY) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("19:00", datetime.time(19)),
        ("at 7.30 pm", datetime.time(19, 30)),
        ("12am", datetime.time(0)),
        ("в 20", datetime.time(20)),
        ("25:00", None),
        ("no time here", None),
    ],
)
def test_parse_time(text: str, expected: datetime.time | None) -> None:
    assert dialogue.parse_time(text) == expected


def test_request_round_trips_through_line_data() -> None:
    request = Request(datetime.date(2025, 5, 2), datetime.time(19), 2, "Anna")
    assert Request.from_data(request.as_data()) == request
    assert request.date_time == "2025-05-02T19:00"
    assert Request(time=datetime.time(19)).date_time is None


def test_describe_in_both_languages() -> None:
    request = Request(datetime.date(2025, 5, 2), datetime.time(19), 2, "Anna")
    assert dialogue.describe(request, TODAY, "en") == "a table for 2 people tomorrow at 19:00"
    assert dialogue.describe(request, TODAY, "ru") == "столик на 2 человека завтра в 19:00"
    assert dialogue.people(5, "ru") == "на 5 человек"
    assert dialogue.people(12, "ru") == "на 12 человек"


def test_shifted_stays_within_the_day() -> None:
    assert dialogue.shifted(datetime.time(19), 90) == datetime.time(20, 30)
    assert dialogue.shifted(datetime.time(23), 90) == datetime.time(23, 59)


def test_language_of() -> None:
    assert dialogue.language_of("Столик на двоих") == "ru"
    assert dialogue.language_of("Table for 2 under Иван") == "en"
