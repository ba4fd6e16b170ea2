"""What a call's outcome leaves in bookings: venue, contact phone, true UTC with the local time
kept, the spoken language; a cancellation cancels and adds no row; cut-short calls add none;
`past` and updated_at."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from core import main as server
from core.app import api_keys, call_record
from core.domain.tasks import StartRequest

NEW_YORK = "+12125551234"
SIM = "+15550100"


async def _call(
    core: server.Core,
    customer: api_keys.CreatedKey,
    phone: str = SIM,
    kind: str = "restaurant_booking",
    **slots: Any,
) -> str:
    cap = "UPDATE customers SET max_concurrent_calls = 20 WHERE customer_id = $1"
    await core.pool.execute(cap, customer.customer_id)  # several calls per test
    request = StartRequest(phone, "Table for 2 under Anna", kind=kind, parsed_slots=slots or None)
    return str((await core.calls.start(customer.customer_id, request)).call["call_id"])


async def _bookings(http: httpx.AsyncClient, customer: api_keys.CreatedKey) -> list[Any]:
    response = await http.get("/v1/booking/bookings", headers={"X-API-Key": customer.api_key})
    assert response.status_code == 200
    body: list[Any] = response.json()
    return body


async def record_outcome(pool: Any, call_id: str, outcome: dict[str, Any]) -> str | None:
    return await call_record.record_outcome(pool, call_id, outcome, rate_cents_per_minute=10)


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _booked(**extra: Any) -> dict[str, Any]:
    return {
        "outcome": "booked",
        "summary": "Booked a table for 2 under Anna.",
        "date_time": "2030-06-14T19:00",
        "guests": 2,
        "holder_name": "Anna",
        **extra,
    }


async def test_booking_has_venue_contact_phone_true_utc_and_local_time(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call_id = await _call(core, customer, NEW_YORK, venue_name="Luigi's")
    booking_id = await record_outcome(core.pool, call_id, _booked(language="en"))
    [booking] = await _bookings(http, customer)
    assert booking["booking_id"] == booking_id and booking["status"] == "active"
    assert booking["venue_name"] == "Luigi's"
    assert booking["contact_phone"] == NEW_YORK
    assert booking["booking_date"] == "2030-06-14T23:00:00"  # 19:00 EDT
    assert booking["booking_local_time"] == "2030-06-14T19:00:00"
    assert booking["venue_timezone"] == "America/New_York"
    assert booking["language"] == "en"  # the call asked for auto


async def test_explicit_zone_and_the_agents_venue_name_on_a_fictional_number(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call_id = await _call(core, customer, venue_timezone="Asia/Yerevan")
    await record_outcome(core.pool, call_id, _booked(venue_name="Trattoria Roma", language="ru"))
    [booking] = await _bookings(http, customer)
    assert booking["venue_name"] == "Trattoria Roma"
    assert booking["booking_date"] == "2030-06-14T15:00:00"
    assert booking["booking_local_time"] == "2030-06-14T19:00:00"
    assert booking["venue_timezone"] == "Asia/Yerevan"
    assert booking["language"] == "ru"


async def test_a_fictional_number_without_a_zone_keeps_the_wall_time_as_utc(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    await record_outcome(core.pool, await _call(core, customer), _booked())
    [booking] = await _bookings(http, customer)
    assert booking["booking_date"] == booking["booking_local_time"] == "2030-06-14T19:00:00"
    assert booking["venue_timezone"] == "UTC"


async def test_a_successful_cancellation_cancels_the_booking_and_adds_none(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    kept = await record_outcome(
        core.pool, await _call(core, customer), _booked(holder_name="Boris")
    )
    target = await record_outcome(core.pool, await _call(core, customer), _booked())
    [before] = [b for b in await _bookings(http, customer) if b["booking_id"] == target]
    cancel = await _call(
        core, customer, kind="restaurant_cancel", name="anna", date="2030-06-14", time="19:00"
    )
    made = await record_outcome(
        core.pool, cancel, {"outcome": "booked", "summary": "Cancelled the table."}
    )
    assert made is None
    rows = {b["booking_id"]: b for b in await _bookings(http, customer)}
    assert set(rows) == {kept, target}
    assert rows[target]["status"] == "cancelled" and rows[kept]["status"] == "active"
    assert _at(rows[target]["updated_at"]) > _at(before["updated_at"])
    outcome = await core.pool.fetchval("SELECT outcome FROM calls WHERE call_id = $1", cancel)
    assert outcome["cancelled_booking_id"] == target and outcome["booking_id"] is None


async def test_a_cancellation_by_booking_id(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    target = await record_outcome(core.pool, await _call(core, customer), _booked())
    cancel = await _call(
        core,
        customer,
        kind="restaurant_cancel",
        booking_id=target,
        name="Someone Else",
        date="2031-01-01",
        time="12:00",
    )
    await record_outcome(core.pool, cancel, {"outcome": "booked", "summary": "ok"})
    [booking] = await _bookings(http, customer)
    assert booking["booking_id"] == target and booking["status"] == "cancelled"


async def test_a_refused_cancellation_changes_nothing(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    await record_outcome(core.pool, await _call(core, customer), _booked())
    cancel = await _call(
        core, customer, kind="restaurant_cancel", name="Anna", date="2030-06-14", time="19:00"
    )
    refused = {"outcome": "refused", "summary": "No such booking.", "refusal_reason": "not found"}
    await record_outcome(core.pool, cancel, refused)
    [booking] = await _bookings(http, customer)
    assert booking["status"] == "active"


@pytest.mark.parametrize("ending", ["voicemail", "time_limit", "silence"])
async def test_cut_short_endings_leave_no_booking(
    ending: str, core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call_id = await _call(core, customer)
    follow_up = {"outcome": "needs_follow_up", "summary": "Left a message.", "ending": ending}
    assert await record_outcome(core.pool, call_id, follow_up) is None
    assert await _bookings(http, customer) == []


async def test_a_voicemail_seen_on_the_call_leaves_no_booking(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call_id = await _call(core, customer)
    await call_record.add_signal(core.pool, call_id, "voicemail")
    follow_up = {"outcome": "needs_follow_up", "summary": "Reached voicemail."}
    assert await record_outcome(core.pool, call_id, follow_up) is None
    assert await _bookings(http, customer) == []


async def test_an_unanswered_call_leaves_no_booking(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call_id = await _call(core, customer)
    await core.pool.execute("UPDATE calls SET status = 'no_answer' WHERE call_id = $1", call_id)
    alternative = {"outcome": "alternative_offered", "summary": "?"}
    assert await record_outcome(core.pool, call_id, alternative) is None
    assert await _bookings(http, customer) == []


async def test_a_booking_whose_time_has_gone_by_reads_as_past(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    old = _booked(date_time="2020-01-10T19:00")
    booking_id = await record_outcome(core.pool, await _call(core, customer), old)
    headers = {"X-API-Key": customer.api_key}
    one = (await http.get(f"/v1/booking/bookings/{booking_id}", headers=headers)).json()
    assert one["status"] == "past"
    assert _at(one["updated_at"]) > _at(one["created_at"])
    past = (await http.get("/v1/booking/bookings?status=past", headers=headers)).json()
    assert [b["booking_id"] for b in past] == [booking_id]
    active = (await http.get("/v1/booking/bookings?status=active", headers=headers)).json()
    assert active == []
