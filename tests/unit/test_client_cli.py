"""The terminal client's pure parts: SSE framing, error bodies, and the call view's state."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
import typer
from rich.console import Console

from cli import client, live_call
from cli.view import (
    CallView,
    LogLine,
    Question,
    SseParser,
    api_error,
    card_rows,
    parse_answer,
    when_text,
)


def feed(parser: SseParser, text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.split("\n"):
        message = parser.feed(line)
        if message is not None:
            out.append(message.as_dict())
    return out


def test_sse_parser_frames_comments_and_multiline_data() -> None:
    parser = SseParser()
    got = feed(
        parser,
        ": ping\n\n"
        'id: 7\nevent: status\ndata: {"status": "dialing"}\n\n'
        ":another comment\n"
        "id:8\nevent:transcript\n"
        'data: {"speaker": "agent",\ndata:  "text": "hi"}\n\n'
        "data: plain\n\n"
        "event: ignored-without-data\n\n",
    )
    assert got == [
        {"id": 7, "event": "status", "data": {"status": "dialing"}},
        {"id": 8, "event": "transcript", "data": {"speaker": "agent", "text": "hi"}},
        # no id field: the last one still names the resume point; no event field: "message"
        {"id": 8, "event": "message", "data": "plain"},
    ]
    assert parser.comments == 2
    assert parser.last_id == "8"


def test_sse_parser_keeps_the_resume_point_and_ignores_unknown_fields() -> None:
    parser = SseParser()
    assert feed(parser, "id: 3\nretry: 1000\nfoo\n\n") == []  # an id alone dispatches nothing
    assert parser.last_id == "3"
    assert feed(parser, "id: bad\0id\ndata: {}\n\n") == [{"id": 3, "event": "message", "data": {}}]


def test_api_error_reads_both_error_shapes() -> None:
    contract = api_error(
        503,
        {"detail": {"code": "MAINTENANCE", "message": "DB upgrade", "resume_at": "2030-01-01"}},
    )
    assert (contract.status, contract.code) == (503, "MAINTENANCE")
    assert contract.message == "DB upgrade resume_at=2030-01-01"
    invalid = api_error(
        422,
        {
            "detail": [
                {"loc": ["body", "kind"], "msg": "Input should be 'other'", "type": "enum"},
                {"loc": ["body", "brief"], "msg": "Field required", "type": "missing"},
            ]
        },
    )
    assert invalid.code == "VALIDATION_ERROR"
    assert invalid.message == "kind: Input should be 'other'; brief: Field required"
    assert str(api_error(404, {"detail": "Not Found"})) == "404 HTTP_404: Not Found"
    assert api_error(502, "<html>bad gateway</html>").message == "<html>bad gateway</html>"


def view() -> CallView:
    return CallView("call_1", "+15550100", status="dialing")


def transcript(speaker: str, text: str, final: bool, source: str = "gemini") -> dict[str, Any]:
    return {"speaker": speaker, "text": text, "final": final, "source": source}


def test_interim_lines_are_replaced_and_final_lines_kept_per_speaker() -> None:
    v = view()
    assert v.apply("transcript", transcript("agent", "Hello, I", False)) == []
    assert v.apply("transcript", transcript("callee", "Luigi's", False, "supervisor_stt")) == []
    assert v.apply("transcript", transcript("agent", "Hello, I would like", False)) == []
    assert v.interim == {"agent": "Hello, I would like", "callee": "Luigi's"}
    lines = v.apply("transcript", transcript("agent", "Hello, I would like a table.", True))
    assert lines == [LogLine("agent", "Hello, I would like a table.")]
    assert v.interim == {"callee": "Luigi's"}
    v.apply("transcript", transcript("callee", "Luigi's, good evening.", True, "supervisor_stt"))
    assert v.interim == {}
    assert [(s.speaker, s.text) for s in v.transcript] == [
        ("agent", "Hello, I would like a table."),
        ("callee", "Luigi's, good evening."),
    ]


def test_the_callee_heard_by_both_sources_is_shown_once() -> None:
    v = view()
    # the model's transcription arrives first, the ear's copy of the same words is dropped
    assert v.apply("transcript", transcript("callee", "Hello, Luigi's!", True, "gemini"))
    assert (
        v.apply("transcript", transcript("callee", "hello luigi's", True, "supervisor_stt")) == []
    )
    # while the ear works, the model's callee lines are not shown even when worded differently
    assert v.apply("transcript", transcript("callee", "For how many?", True, "supervisor_stt"))
    assert v.apply("transcript", transcript("callee", "For how many people?", True)) == []
    # the agent is never deduplicated
    assert v.apply("transcript", transcript("agent", "Two.", True))
    assert v.apply("transcript", transcript("agent", "Two.", True))
    # once the ear is lost, the model's transcription is the callee's voice again
    v.apply("supervisor_decision", {"kind": "ear_lost", "reason": "stt down", "action": "none"})
    assert v.apply("transcript", transcript("callee", "At what time?", True)) == [
        LogLine("callee", "At what time?")
    ]
    assert [s.text for s in v.transcript if s.speaker == "callee"] == [
        "Hello, Luigi's!",
        "For how many?",
        "At what time?",
    ]


def test_ask_user_prompt_state_until_answered_or_timed_out() -> None:
    v = view()
    ask = {"request_id": "r1", "question": "Only 20:30 — take it?", "options": ["yes", "no"]}
    assert v.apply("ask_user", {**ask, "timeout_sec": 30}) == [
        LogLine("question", "Only 20:30 — take it?  [1] yes  [2] no")
    ]
    assert v.apply("ask_user", ask) == []  # a replayed question is not asked twice
    v.apply("ask_user", {"request_id": "r2", "question": "Window seat?", "timeout_sec": 30})
    assert [q.request_id for q in v.questions] == ["r1", "r2"]
    assert v.questions[0].timeout_sec == 30

    shown = render(v)
    assert "Only 20:30 — take it?" in shown and "[2] no" in shown and "+1 more" in shown
    for key in "yes!\x7f\x7f\x7fo":
        assert v.type_key(key) is None
    assert v.typed == "yo"
    assert "> yo" in render(v)
    assert v.type_key("\x15") is None and v.typed == ""
    for key in "1":
        v.type_key(key)
    assert v.type_key("\r") == "1" and v.typed == ""

    v.sent["r1"] = "yes"  # what this terminal POSTed
    answered = v.apply(
        "answer", {"request_id": "r1", "mode": "voice", "delivered": True, "via": "api"}
    )
    assert answered == [LogLine("answer", "answer delivered (voice, via api): yes")]
    assert [q.request_id for q in v.questions] == ["r2"]
    v.apply("answer", {"request_id": "r2", "delivered": False, "timed_out": True})
    assert v.questions == []
    assert "carries on without it" in v.note
    assert "the agent asks" not in render(v)


def test_parse_answer_picks_options_and_whispers_context() -> None:
    q = Question("r1", "Take 20:30?", ["yes", "no"], 30)
    assert parse_answer(" 2 ", q) == ("no", "voice")
    assert parse_answer("3", q) == ("3", "voice")  # not an option: said as typed
    assert parse_answer("yes, and a high chair", q) == ("yes, and a high chair", "voice")
    assert parse_answer("/context she is vegetarian", q) == (
        "she is vegetarian",
        "context",
    )
    assert parse_answer("/context", q) is None
    assert parse_answer("   ", q) is None
    assert parse_answer("1", Question("r2", "How many?", [], 30)) == ("1", "voice")


def test_status_outcome_and_the_rest_of_the_events() -> None:
    v = view()
    assert v.apply("status", {"status": "dialing"}) == [LogLine("status", "dialing")]
    assert v.apply("status", {"status": "in_progress", "from": "dialing"}) == [
        LogLine("status", "dialing → in_progress")
    ]
    v.apply("supervisor_decision", {"kind": "ivr", "reason": "menu", "action": "press 1"})
    assert v.decisions == ["ivr: menu → press 1"]
    v.apply("signal", {"name": "table_confirmed"})
    v.apply("ask_user", {"request_id": "r9", "question": "?", "options": []})
    outcome = {
        "status": "completed",
        "outcome_type": "booked",
        "outcome_summary": "Table for 2 at 19:00",
        "details": {"booking_id": "bk_1"},
    }
    assert v.apply("outcome", outcome) == [LogLine("outcome", "booked — Table for 2 at 19:00")]
    assert (v.status, v.outcome, v.questions) == ("completed", outcome, [])
    v.apply("recording_ready", {"recording_url": "/calls/call_1/recording", "duration_sec": 30})
    assert v.recording_url == "/calls/call_1/recording"
    assert v.apply("error", {"code": "UNAVAILABLE", "message": "core went away"}) == [
        LogLine("error", "UNAVAILABLE: core went away")
    ]
    assert v.apply("transcript_ready", {}) == []
    assert "completed" in render(v)


CALL = {
    "call_id": "call_1",
    "status": "completed",
    "outcome_type": "booked",
    "outcome_summary": "Table for 2 at 19:00 under Anna",
    "duration_sec": 75.4,
    "outcome_charge_cents": 250,
    "reservation_signals": ["table_confirmed"],
    "recording_url": None,
}


def test_final_card_has_outcome_charge_and_booking() -> None:
    booking = {
        "booking_id": "bk_1",
        "status": "active",
        "booking_date": "2026-12-01T19:00:00",
        "guests": 2,
        "booking_holder_name": "Anna",
        "venue_name": "Luigi's",
        "refusal_reason": None,
    }
    assert card_rows(CALL, booking) == [
        ("status", "completed"),
        ("outcome", "booked — Table for 2 at 19:00 under Anna"),
        ("duration", "1m 15s"),
        ("charge", "$2.50"),
        ("signals", "table_confirmed"),
        ("booking", "active (bk_1)"),
        ("date", "2026-12-01 19:00"),
        ("guests", "2"),
        ("name", "Anna"),
        ("venue", "Luigi's"),
    ]
    refused = {**booking, "status": "cancelled", "guests": None, "refusal_reason": "fully booked"}
    rows = dict(card_rows({**CALL, "outcome_type": "refused"}, refused))
    assert rows["refusal"] == "fully booked" and "guests" not in rows
    zoned = {
        **booking,
        "booking_date": "2030-06-14T23:00:00",
        "booking_local_time": "2030-06-14T19:00:00",
        "venue_timezone": "America/New_York",
        "contact_phone": "+12125551234",
    }
    rows = dict(card_rows(CALL, zoned))
    assert rows["date"] == "2030-06-14 19:00 America/New_York (2030-06-14 23:00 UTC)"
    assert rows["phone"] == "+12125551234"
    failed = {**CALL, "status": "no_answer", "outcome_type": None, "outcome_summary": None}
    rows = dict(card_rows({**failed, "duration_sec": None, "outcome_charge_cents": 0}, None))
    assert rows == {
        "status": "no_answer",
        "outcome": "—",
        "duration": "—",
        "charge": "$0.00",
        "signals": "table_confirmed",
        "booking": "none",
    }
    card = Console(file=io.StringIO(), record=True, width=100)
    card.print(live_call.render_card("call_1", card_rows(CALL, booking)))
    text = card.export_text()
    assert "call_1" in text and "venue     Luigi's" in text


def test_slots_keep_ints_as_ints() -> None:
    assert client._slots(["guests=2", "time=19:00", "name=Anna Lee", "floor=-1", "n= 3"]) == {
        "guests": 2,
        "time": "19:00",
        "name": "Anna Lee",
        "floor": -1,
        "n": 3,
    }
    with pytest.raises(typer.BadParameter):
        client._slots(["guests"])
    with pytest.raises(typer.BadParameter):
        client._slots(["=2"])


def render(v: CallView) -> str:
    console = Console(file=io.StringIO(), record=True, width=100)
    console.print(v.render(now=v.started + 75))
    return console.export_text()


def test_times_are_shown_to_the_minute() -> None:
    assert when_text(None) == ""
    assert when_text("2026-12-01T19:00:00") == "2026-12-01 19:00"  # venue-local, as is
    instant = "2026-12-01T19:00:00+00:00"
    local = dt.datetime.fromisoformat(instant).astimezone().strftime("%Y-%m-%d %H:%M")
    assert when_text(instant) == local
