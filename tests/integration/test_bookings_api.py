"""GET /v1/booking/bookings[/{id}]: owner-only, status filter, limit bounds."""

from __future__ import annotations

import datetime as dt

import httpx

from core.app import api_keys, bookings
from core.domain import bookings as booking_rules
from core.domain.booking_time import BookingTime
from core.main import Core
from tests.conftest import new_customer


async def _book(core: Core, customer: api_keys.CreatedKey, status: str, **extra: object) -> str:
    return await bookings.create(
        core.pool,
        customer_id=customer.customer_id,
        call_id=None,
        type="restaurant",
        target_phone="+15550100",
        status=status,
        language="en",
        **extra,  # type: ignore[arg-type]
    )


async def test_list_filters_and_orders(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey
) -> None:
    headers = {"X-API-Key": customer.api_key}
    first = await _book(
        core,
        customer,
        "active",
        guests=4,
        booking_holder_name="Anna",
        when=BookingTime(dt.datetime(2030, 12, 1, 19), "UTC", dt.datetime(2030, 12, 1, 19)),
    )
    second = await _book(core, customer, "cancelled", refusal_reason="fully booked")
    listed = (await http.get("/v1/booking/bookings", headers=headers)).json()
    assert [b["booking_id"] for b in listed] == [second, first]
    active = (await http.get("/v1/booking/bookings?status=active", headers=headers)).json()
    assert [b["booking_id"] for b in active] == [first]
    assert active[0]["booking_date"] == "2030-12-01T19:00:00"
    assert active[0]["guests"] == 4 and active[0]["call_id"] is None
    one = (await http.get("/v1/booking/bookings?limit=1", headers=headers)).json()
    assert len(one) == 1


async def test_unknown_status_is_400_listing_allowed_values(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    response = await http.get(
        "/v1/booking/bookings?status=done", headers={"X-API-Key": customer.api_key}
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail["code"] == "INVALID_ARGUMENT_STATUS"
    for allowed in booking_rules.STATUSES:
        assert allowed in detail["message"]


async def test_limit_bounds_are_422(http: httpx.AsyncClient, customer: api_keys.CreatedKey) -> None:
    for bad in ("0", "101", "x"):
        response = await http.get(
            f"/v1/booking/bookings?limit={bad}", headers={"X-API-Key": customer.api_key}
        )
        assert response.status_code == 422


async def test_foreign_booking_is_indistinguishable_from_missing(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey
) -> None:
    other = await new_customer(core.pool)
    theirs = await _book(core, other, "active")
    headers = {"X-API-Key": customer.api_key}
    foreign = await http.get(f"/v1/booking/bookings/{theirs}", headers=headers)
    missing = await http.get(
        "/v1/booking/bookings/00000000-0000-0000-0000-000000000000", headers=headers
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    assert (await http.get("/v1/booking/bookings", headers=headers)).json() == []
    own = await http.get(f"/v1/booking/bookings/{theirs}", headers={"X-API-Key": other.api_key})
    assert own.status_code == 200 and own.json()["booking_id"] == theirs
