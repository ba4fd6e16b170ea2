"""The Gemini stand-in's policy: it reads the real system instruction and follows the brief."""

from __future__ import annotations

import datetime
import itertools

import pytest

from media.providers.agent_prompt import (
    DEFAULT_DISCLOSURES,
    build_system_instruction,
    customer_answer_text,
    greeting_cue,
    voicemail_cue,
    wrap_up_cue,
)
from sim.agent import (
    AgentPolicy,
    Ask,
    Finish,
    Move,
    Speak,
    Tool,
    customer_reply,
    is_yes,
    read_instructions,
    supervisor_cue,
)
from sim.world import Line

TODAY = datetime.date(2025, 5, 1)
DISCLOSURE = "Hello, this is an AI assistant calling on behalf of Anna."
_ids = itertools.count(1)


def policy(
    brief: str = "Table for 2 tomorrow at 19:00 under Anna", **kwargs: object
) -> AgentPolicy:
    language = str(kwargs.pop("language", "en"))
    slots = kwargs.pop("slots", {})
    kind = str(kwargs.pop("kind", "restaurant_booking"))
    text = build_system_instruction(brief, language, kind, slots, DISCLOSURE)  # type: ignore[arg-type]
    return AgentPolicy(read_instructions(text), TODAY)


def venue(act: str, data: dict[str, str] | None = None, language: str = "en") -> Line:
    return Line(next(_ids), "venue", act, "", language, data or {}, (), 1.0)


def kinds(moves: list[Move]) -> list[str]:
    out = []
    for m in moves:
        if isinstance(m, Speak):
            out.append(f"say:{m.act}")
        elif isinstance(m, Tool):
            out.append(f"{m.name}:{next(iter(m.args.values()))}")
        elif isinstance(m, Ask):
            out.append("ask_user")
        else:
            out.append(f"end_call:{m.args['outcome']}")
    return out


def finish(moves: list[Move]) -> dict[str, object]:
    last = moves[-1]
    assert isinstance(last, Finish)
    return last.args


def test_reads_the_production_system_instruction() -> None:
    text = build_system_instruction(
        "Book a table for 4 tomorrow at 19:00 under Anna.",
        "ru",
        "hotel_booking",
        {"guests": 4, "time": "19:00"},
        DISCLOSURE,
    )
    ins = read_instructions(text)
    assert ins.disclosure == DISCLOSURE
    assert ins.kind == "hotel_booking"
    assert ins.brief == "Book a table for 4 tomorrow at 19:00 under Anna."
    assert ins.slots == {"guests": "4", "time": "19:00"}
    assert ins.language == "ru"
    assert ins.voicemail == "wait"


def test_reads_a_bare_instruction_with_defaults() -> None:
    ins = read_instructions("Столик на двоих завтра в 19:00")
    assert ins.disclosure == DEFAULT_DISCLOSURES["ru"]
    assert ins.language == "auto" and ins.kind == "restaurant_booking"


def test_greets_with_the_disclosure_first_then_books() -> None:
    p = policy()
    hello = p.respond(venue("greeting"))
    assert kinds(hello) == ["say:request"]
    said = hello[0]
    assert isinstance(said, Speak) and said.text.startswith(DISCLOSURE)
    assert said.data == {
        "kind": "restaurant_booking",
        "date": "2025-05-02",
        "time": "19:00",
        "guests": "2",
        "name": "Anna",
    }
    moves = p.respond(venue("confirm", said.data))
    assert kinds(moves) == ["say:confirm_and_bye", "end_call:booked"]
    assert finish(moves) == {
        "outcome": "booked",
        "summary": "Booked a table for 2 people tomorrow at 19:00 under Anna.",
        "date_time": "2025-05-02T19:00",
        "guests": 2,
        "holder_name": "Anna",
        "language": "en",
    }
    assert p.respond(venue("goodbye")) == []  # ended: nothing more


def test_reports_the_venue_name_it_heard() -> None:
    p = policy()
    hello = p.respond(venue("greeting", {"venue": "Trattoria Roma"}))
    said = hello[0]
    assert isinstance(said, Speak)
    args = finish(p.respond(venue("confirm", said.data)))
    assert args["venue_name"] == "Trattoria Roma" and args["outcome"] == "booked"


def test_a_confirmed_cancellation_is_reported_as_done() -> None:
    p = policy("Cancel the table for 2 tomorrow at 19:00 under Anna.", kind="restaurant_cancel")
    said = p.respond(venue("greeting"))[0]
    assert isinstance(said, Speak) and "cancel" in said.text
    args = finish(p.respond(venue("confirm", said.data)))
    assert args["outcome"] == "booked" and str(args["summary"]).startswith("Cancelled")


def test_asks_the_customer_about_another_time_and_accepts() -> None:
    p = policy()
    p.respond(venue("greeting"))
    offer = {"date": "2025-05-02", "time": "20:30", "guests": "2", "name": "Anna"}
    moves = p.respond(venue("offer", offer))
    assert kinds(moves) == ["ask_user", "say:hold"]
    ask = moves[0]
    assert isinstance(ask, Ask) and "19:00" in ask.question and "20:30" in ask.question
    assert ask.options and "20:30" in ask.options[0]  # the choices go along as options
    assert [is_yes(o) for o in ask.options] == [True, False]
    assert p.pending == "offer"
    accepted = p.on_answer(
        customer_reply(customer_answer_text("Yes, 20:30 is fine", "voice")) or ""
    )
    assert kinds(accepted) == ["say:accept_offer"]
    moves = p.respond(venue("confirm", offer))
    args = finish(moves)
    assert args["outcome"] == "booked" and args["date_time"] == "2025-05-02T20:30"
    assert "accepted the alternative" in str(args["summary"])


def test_a_declined_offer_ends_as_alternative_offered() -> None:
    p = policy()
    p.respond(venue("offer", {"time": "20:30"}))
    moves = p.on_answer("No, thanks")
    assert kinds(moves) == ["say:decline_offer", "end_call:alternative_offered"]


def test_a_counter_proposal_is_put_to_the_venue() -> None:
    p = policy()
    p.respond(venue("offer", {"time": "20:30"}))
    moves = p.on_answer("Ask if 21:15 works")
    assert kinds(moves) == ["say:request"]
    said = moves[0]
    assert isinstance(said, Speak) and said.data["time"] == "21:15"


def test_no_answer_from_the_customer_needs_follow_up() -> None:
    p = policy()
    p.respond(venue("offer", {"time": "20:30"}))
    assert kinds(p.on_customer_timeout()) == ["say:no_answer_bye", "end_call:needs_follow_up"]


def test_refusal_reports_the_reason() -> None:
    moves = policy().respond(venue("refuse", {"reason": "we are closed"}))
    assert kinds(moves) == ["say:refused_bye", "end_call:refused"]
    assert finish(moves)["refusal_reason"] == "we are closed"


def test_ivr_menu_reports_and_presses_the_digit() -> None:
    moves = policy().respond(venue("ivr_menu", {"reservations_digit": "3"}))
    assert kinds(moves) == ["report_signal:ivr_menu", "send_dtmf:3"]


def test_voicemail_waits_for_the_supervisor_then_leaves_its_message() -> None:
    p = policy()
    assert kinds(p.respond(venue("voicemail_greeting"))) == ["report_signal:voicemail"]
    cue = supervisor_cue(voicemail_cue("Please call Anna back."))
    assert cue is not None
    moves = p.on_supervisor(cue)
    assert kinds(moves) == ["say:voicemail_message", "end_call:needs_follow_up"]
    said = moves[0]
    assert isinstance(said, Speak) and said.text == "Please call Anna back."


def test_voicemail_message_cue_may_arrive_before_the_beep() -> None:
    p = policy()
    cue = supervisor_cue(voicemail_cue("Call back."))
    assert cue is not None and p.on_supervisor(cue) == []
    moves = p.respond(venue("voicemail_greeting"))
    assert kinds(moves) == [
        "report_signal:voicemail",
        "say:voicemail_message",
        "end_call:needs_follow_up",
    ]


def test_voicemail_without_instructions_ends_as_failed() -> None:
    p = policy()
    p.respond(venue("voicemail_greeting"))
    assert kinds(p.on_customer_timeout()) == ["end_call:failed"]


def test_switches_language_when_not_understood() -> None:
    p = policy()
    p.respond(venue("greeting"))
    moves = p.respond(venue("not_understood", {"language": "ru"}, language="ru"))
    said = moves[0]
    assert isinstance(said, Speak) and said.act == "request"
    assert said.text.startswith(DEFAULT_DISCLOSURES["ru"]) and p.lang == "ru"


def test_auto_language_follows_the_venue() -> None:
    p = policy(language="auto")
    said = p.respond(venue("greeting", language="ru"))[0]
    assert isinstance(said, Speak) and "забронировать" in said.text


def test_repeats_itself_after_being_talked_over() -> None:
    p = policy()
    p.respond(venue("greeting"))
    moves = p.respond(venue("barge_in"))
    assert kinds(moves) == ["say:repeat"]


def test_supervisor_cues() -> None:
    p = policy()
    greet = supervisor_cue(greeting_cue())
    assert greet is not None and p.on_supervisor(greet) == [] and p.greet_cued
    wrap = supervisor_cue(wrap_up_cue("silence"))
    assert wrap is not None
    assert kinds(p.on_supervisor(wrap)) == ["say:bye", "end_call:needs_follow_up"]


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Yes please", True),
        ("ok, book it", True),
        ("да, подходит", True),
        ("no", False),
        ("нет, не надо", False),
        ("maybe later?", None),
    ],
)
def test_is_yes(text: str, verdict: bool | None) -> None:
    assert is_yes(text) is verdict


def test_text_turn_prefixes() -> None:
    assert customer_reply(customer_answer_text("yes", "context")) == "yes"
    assert customer_reply("hello") is None
    assert supervisor_cue("[SUPERVISOR] hold on") == "hold on"


def test_an_overclaiming_agent_reports_booked_whatever_was_said() -> None:
    p = policy()
    over = AgentPolicy(p.ins, TODAY, overclaim=True)
    refused = over.respond(venue("refuse", {"reason": "we are fully booked"}))
    assert kinds(refused) == ["say:refused_bye", "end_call:booked"]
    assert finish(refused)["guests"] == p.request.guests
    hung_up = AgentPolicy(p.ins, TODAY, overclaim=True).respond(venue("hang_up_notice"))
    assert kinds(hung_up) == ["end_call:booked"]
