"""The scripted venues: who answers which number, and what each says back."""

from __future__ import annotations

import datetime

from sim.dialogue import Request
from sim.scenario_files import shipped, venue_for
from sim.venues import (
    Answering,
    Booking,
    HangUp,
    Manner,
    Reaction,
    Say,
    VenueMind,
)

VENUES = shipped().venues
DEFAULT_VENUE = shipped().default

TODAY = datetime.date(2025, 5, 1)
ASK = Request(datetime.date(2025, 5, 2), datetime.time(19), 2, "Anna").as_data()


def mind(number: str) -> VenueMind:
    return VenueMind(venue_for(number), TODAY)


def acts(reactions: list[Reaction]) -> list[str]:
    return [r.act if isinstance(r, Say) else "hang_up" for r in reactions]


def only(reactions: list[Reaction]) -> Say:
    assert len(reactions) == 1 and isinstance(reactions[0], Say)
    return reactions[0]


def test_every_behaviour_has_a_number() -> None:
    numbers = [f"+1555010{i}" for i in range(10)]
    assert sorted(VENUES) == numbers
    venues = [VENUES[n] for n in numbers]
    assert {v.answering for v in venues} == set(Answering)
    assert {v.booking for v in venues} == set(Booking)
    assert {v.manner for v in venues} == set(Manner)
    assert {v.language for v in venues} == {"en", "ru"}


def test_unknown_numbers_reach_the_default_venue() -> None:
    venue = venue_for("+15550150")
    assert venue.name == DEFAULT_VENUE.name and venue.number == "+15550150"
    assert venue.booking is Booking.AS_ASKED and venue.answering is Answering.HUMAN


def test_books_as_asked() -> None:
    m = mind("+15550100")
    assert acts(m.opening()) == ["greeting"]
    confirm = only(m.hear("request", "en", ASK))
    assert confirm.act == "confirm"
    assert confirm.data == ASK
    assert "Anna" in confirm.text and "19:00" in confirm.text


def test_asks_for_a_missing_name_then_books() -> None:
    m = mind("+15550100")
    assert only(m.hear("request", "en", {**ASK, "name": ""})).act == "ask_name"
    assert only(m.hear("give_name", "en", {"name": "Bob"})).data["name"] == "Bob"


def test_fully_booked_refuses_with_the_reason() -> None:
    refusal = only(mind("+15550101").hear("request", "en", ASK))
    assert refusal.act == "refuse"
    assert refusal.data == {"reason": "we are fully booked that evening"}


def test_offers_another_time_and_books_it_when_accepted() -> None:
    m = mind("+15550102")
    offer = only(m.hear("request", "en", ASK))
    assert offer.act == "offer" and offer.data["time"] == "20:30"
    assert offer.data["asked_time"] == "19:00"
    assert only(m.hear("hold", "en", {})).act == "hold_ack"
    booked = only(m.hear("accept_offer", "en", {}))
    assert booked.act == "confirm" and booked.data["time"] == "20:30"


def test_offer_declined_ends_politely() -> None:
    m = mind("+15550102")
    m.hear("request", "en", ASK)
    assert acts(m.hear("decline_offer", "en", {})) == ["goodbye"]


def test_out_of_hours_and_large_parties_are_refused() -> None:
    late = only(mind("+15550100").hear("request", "en", {**ASK, "time": "23:30"}))
    assert late.act == "refuse" and "12:00 to 23:00" in late.data["reason"]
    crowd = only(mind("+15550100").hear("request", "en", {**ASK, "guests": "40"}))
    assert crowd.act == "refuse"


def test_hangs_up_after_hearing_the_request() -> None:
    reactions = mind("+15550107").hear("request", "en", ASK)
    assert acts(reactions) == ["hang_up_notice", "hang_up"]
    assert isinstance(reactions[-1], HangUp)


def test_russian_venue_asks_for_russian_once_then_books() -> None:
    m = mind("+15550108")
    assert "Пельменная" in only(m.opening()).text
    complaint = only(m.hear("request", "en", ASK))
    assert complaint.act == "not_understood" and complaint.data == {"language": "ru"}
    confirm = only(m.hear("request", "ru", ASK))
    assert confirm.act == "confirm" and "на имя Anna" in confirm.text


def test_talks_over_the_first_request_only() -> None:
    m = mind("+15550109")
    assert acts(m.on_agent_started("request")) == ["barge_in"]
    assert m.on_agent_started("request") == []
    assert only(m.hear("repeat", "en", ASK)).act == "confirm"


def test_ivr_routes_on_the_digit() -> None:
    m = mind("+15550106")
    menu = only(m.opening())
    assert menu.act == "ivr_menu"
    assert menu.data == {"reservations_digit": "1", "venue": "Grand Hotel Central"}
    assert m.hear("request", "en", ASK) == []  # a menu does not listen
    m.on_digits("1")
    assert acts(m.opening()) == ["greeting"]
    assert only(m.hear("request", "en", ASK)).act == "confirm"


def test_ivr_wrong_digit_says_the_hours_and_hangs_up() -> None:
    m = mind("+15550106")
    m.on_digits("2")
    assert acts(m.opening()) == ["ivr_hours", "hang_up"]


def test_voicemail_greets_listens_and_hangs_up_on_silence() -> None:
    m = mind("+15550105")
    greeting = only(m.opening())
    assert greeting.act == "voicemail_greeting" and "after the tone" in greeting.text
    assert m.hear("voicemail_message", "en", {}) == []
    assert acts(m.on_silence()) == ["hang_up"]


def test_silence_gets_a_nudge_then_a_hang_up() -> None:
    m = mind("+15550100")
    assert acts(m.on_silence()) == ["still_there"]
    assert acts(m.on_silence()) == ["goodbye", "hang_up"]


def test_a_cancellation_is_confirmed_whatever_the_tables() -> None:
    m = mind("+15550101")  # fully booked, but a cancellation needs no table
    assert only(m.opening()).data == {"venue": "Le Petit Bistro"}
    done = only(m.hear("request", "en", {**ASK, "kind": "restaurant_cancel"}))
    assert done.act == "confirm" and "cancelled" in done.text
