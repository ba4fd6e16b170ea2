"""Post-call analysis through the real media session (gRPC → core → PostgreSQL): an agent
that claims `booked` where the venue said it is fully booked, or hung up, is overruled."""

from __future__ import annotations

from typing import Any

import httpx
from callagent.v1 import media_pb2

from core import main as server
from core.app import api_keys
from tests.conftest import eventually
from tests.integration.test_ask_user import session, start


def _line(speaker: str, text: str) -> dict[str, Any]:
    source = "supervisor_stt" if speaker == "callee" else "gemini"
    return {
        "transcript": media_pb2.TranscriptLine(
            speaker=speaker, text=text, final=True, source=source
        )
    }


CLAIM = media_pb2.CallOutcome(
    outcome="booked",
    summary="Booked a table for 2 tomorrow at 19:00 under Anna.",
    date_time="2030-12-01T19:00",
    guests=2,
    holder_name="Anna",
    language="en",
)


async def _call_with(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey, lines: list[Any]
) -> dict[str, Any]:
    """Play `lines` then the agent's false `booked` claim; return the call as the API shows
    it, with its events and the booking it made (if any)."""
    call_id = await start(core, customer, kind="restaurant_booking")
    async with session(core, call_id) as media:
        await media.next()
        for line in lines:
            media.send(**line)
        media.send(outcome=CLAIM)

        async def recorded() -> bool:
            sql = "SELECT outcome_type FROM calls WHERE call_id = $1"
            return bool(await core.pool.fetchval(sql, call_id))

        await eventually(recorded)
    headers = {"X-API-Key": customer.api_key}
    call: dict[str, Any] = (await http.get(f"/calls/{call_id}", headers=headers)).json()
    call["events"] = [
        (r["type"], dict(r["payload"]))
        for r in await core.pool.fetch(
            "SELECT type, payload FROM call_events WHERE call_id = $1 ORDER BY event_id", call_id
        )
    ]
    call["outcome"] = await core.pool.fetchval(
        "SELECT outcome FROM calls WHERE call_id = $1", call_id
    )
    bookings = (await http.get("/v1/booking/bookings", headers=headers)).json()
    call["booking"] = next((b for b in bookings if b["call_id"] == call_id), None)
    return call


def _assert_overruled(call: dict[str, Any], said: str) -> None:
    assert call["outcome_type"] == "needs_follow_up"
    assert call["outcome"]["agent_claimed"] == "booked"
    assert call["outcome"]["verification"]["contradicts_agent"] is True
    [decision] = [d for d in call["supervisor_decisions"] if d["kind"] == "post_call_analysis"]
    assert decision["action"] == "overruled" and said in decision["reason"]
    assert decision["classifier"] == "rules"  # no model configured: the rules decide
    logged = [p for t, p in call["events"] if t == "supervisor_decision"]
    assert decision in logged
    assert call["booking"] is not None and call["booking"]["status"] != "active"
    assert call["booking"]["status"] == "pending_user_confirm"


async def test_a_booking_claimed_at_a_fully_booked_venue_is_overruled(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call = await _call_with(
        core,
        http,
        customer,
        [
            _line("callee", "Good evening, Le Petit Bistro, this is Maria speaking."),
            _line("agent", "I'd like to book a table for 2 people tomorrow at 19:00."),
            _line("callee", "I'm sorry, we are fully booked that evening."),
            _line("agent", "I understand. Thank you for your time, goodbye."),
        ],
    )
    _assert_overruled(call, "fully booked")
    assert call["outcome"]["verification"]["outcome"] == "refused"


async def test_a_booking_claimed_after_the_venue_hung_up_is_overruled(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call = await _call_with(
        core,
        http,
        customer,
        [
            _line("callee", "Good evening, Quick Grill, this is Sam speaking."),
            _line("agent", "I'd like to book a table for 2 people tomorrow at 19:00."),
            _line("callee", "Oh, sorry, I have to take another call—"),
        ],
    )
    _assert_overruled(call, "another call")


async def test_a_booking_the_venue_confirmed_stands(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call = await _call_with(
        core,
        http,
        customer,
        [
            _line("callee", "Good evening, Trattoria Roma, this is Maria speaking."),
            _line("agent", "I'd like to book a table for 2 people tomorrow at 19:00."),
            _line("callee", "Perfect, I've booked a table for 2 people under Anna. See you then!"),
        ],
    )
    assert call["outcome_type"] == "booked" and "agent_claimed" not in call["outcome"]
    assert call["outcome"]["verification"]["outcome"] == "booked"
    assert not [d for d in call["supervisor_decisions"] if d["kind"] == "post_call_analysis"]
    assert call["booking"]["status"] == "active"
