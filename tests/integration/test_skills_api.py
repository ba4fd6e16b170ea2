"""Skills through the real stack: public discovery, runs, and Stripe-style idempotency."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from core import main as server
from core.app import api_keys, idempotency
from tests.conftest import new_customer
from tests.fakes.telephony import FakeTelephony

RUN = {
    "venue_phone": "+15550100",
    "date": "2030-06-14",
    "time": "19:00",
    "party_size": 4,
    "name": "Anna",
    "ask_user_mode": "stream",
}


def key(c: api_keys.CreatedKey, idem: str | None = None) -> dict[str, str]:
    headers = {"X-API-Key": c.api_key}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return headers


async def test_discovery_is_public_and_stable(http: httpx.AsyncClient) -> None:
    listed = await http.get("/skills")
    assert listed.status_code == 200
    ids = [s["skill_id"] for s in listed.json()]
    assert ids[0] == "restaurant_booking"
    assert {
        "restaurant_booking",
        "restaurant_cancel",
        "doctor_appointment",
        "hotel_booking",
        "concierge",
    } <= set(ids)
    assert listed.json()[0]["manifest_url"] == "/skills/restaurant_booking/manifest"
    first = await http.get("/skills/restaurant_booking/manifest")
    second = await http.get("/skills/restaurant_booking/manifest")
    assert first.status_code == 200 and first.content == second.content
    assert first.headers["etag"] == second.headers["etag"]
    manifest = first.json()
    assert set(manifest["input_schema"]["required"]) == RUN.keys() - {"ask_user_mode"}
    cached = await http.get(
        "/skills/restaurant_booking/manifest", headers={"If-None-Match": first.headers["etag"]}
    )
    assert cached.status_code == 304
    missing = await http.get("/skills/teleport/manifest")
    assert missing.status_code == 404


async def test_run_needs_a_key(http: httpx.AsyncClient) -> None:
    response = await http.post("/skills/restaurant_booking/run", json=RUN)
    assert response.status_code == 401


async def test_run_becomes_a_call(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    response = await http.post("/skills/restaurant_booking/run", json=RUN, headers=key(customer))
    assert response.status_code == 201, response.text
    body = response.json()
    call_id = body["call_id"]
    assert body["skill_run_id"] == f"srun_{call_id}"
    assert body["status"] == "dialing" and body["call_sid"] == telephony.dials[0].call_sid
    assert body["status_url"] == f"/calls/{call_id}"
    assert body["answer_url"] == f"/calls/{call_id}/answer"
    # Customers are pointed at what they may fetch: the merged transcript (202 while the
    # call is live), not the admin-only recording, which answers them 404.
    assert body["recording_url"] == f"/calls/{call_id}/transcript-merged"
    merged = await http.get(body["recording_url"], headers=key(customer))
    assert merged.status_code == 202 and merged.json() == {"status": "merger_pending"}
    assert any(f"GET {body['recording_url']}" in step for step in body["expected_next_steps"])
    assert not any("/recording" in step for step in body["expected_next_steps"])
    assert body["replayed"] is False and body["credits_reserved"] == 100
    assert any("events" in step for step in body["expected_next_steps"])
    call = (await http.get(f"/calls/{call_id}", headers=key(customer))).json()
    assert call["target_phone"] == "+15550100"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"party_size": 0}, "party_size"),
        ({"date": "14/06/2030"}, "date"),
        ({"name": None}, "name"),
        ({"surprise": True}, "surprise"),
    ],
)
async def test_schema_errors_name_the_field(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, patch: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**RUN, **patch}.items() if v is not None}
    response = await http.post("/skills/restaurant_booking/run", json=body, headers=key(customer))
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail["code"] == "INVALID_ARGUMENT_INPUT"
    assert detail["field"] == field and field in detail["message"]


async def test_mode_any_without_a_channel_is_a_clear_400(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    body = {**RUN, "ask_user_mode": "any"}
    response = await http.post("/skills/restaurant_booking/run", json=body, headers=key(customer))
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "ASK_USER_CHANNEL_MISSING"
    assert "PUT /users/me/webhook" in response.json()["detail"]["message"]
    assert telephony.dials == []


async def test_fifty_concurrent_retries_dial_once(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    responses = await asyncio.gather(
        *(
            http.post("/skills/restaurant_booking/run", json=RUN, headers=key(customer, "k-50"))
            for _ in range(50)
        )
    )
    assert len(telephony.dials) == 1
    winners = [r for r in responses if r.status_code == 201]
    busy = [r for r in responses if r.status_code == 409]
    assert len(winners) + len(busy) == 50
    assert all(r.json()["detail"]["code"] == "idempotency_in_progress" for r in busy)
    first = next(r.json() for r in winners if not r.json()["replayed"])
    for replay in (r.json() for r in winners if r.json()["replayed"]):
        assert {**replay, "replayed": False} == first
    again = await http.post(
        "/skills/restaurant_booking/run", json=RUN, headers=key(customer, "k-50")
    )
    assert again.status_code == 201 and again.json() == {**first, "replayed": True}
    assert len(telephony.dials) == 1


async def test_conflict_too_long_stale_and_expiry(
    http: httpx.AsyncClient,
    core: server.Core,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
) -> None:
    url = "/skills/restaurant_booking/run"
    assert (await http.post(url, json=RUN, headers=key(customer, "k1"))).status_code == 201
    other = await http.post(url, json={**RUN, "party_size": 5}, headers=key(customer, "k1"))
    assert other.status_code == 409
    assert other.json()["detail"]["code"] == "idempotency_conflict"
    long = await http.post(url, json=RUN, headers=key(customer, "x" * 256))
    assert long.status_code == 400
    assert long.json()["detail"]["code"] == "idempotency_key_too_long"

    # the same key is another customer's business
    stranger = await new_customer(core.pool)
    await core.pool.execute("UPDATE customers SET max_concurrent_calls = 10")
    assert (await http.post(url, json=RUN, headers=key(stranger, "k1"))).status_code == 201

    # a first attempt that died mid-way: the lock is stale
    await core.pool.execute(
        "INSERT INTO idempotency_keys (customer_id, key, fingerprint, status, locked_at, "
        "expires_at) SELECT customer_id, 'k-stale', fingerprint, 'running', "
        "now() - interval '1 hour', now() + interval '1 day' FROM idempotency_keys "
        "WHERE key = 'k1' AND customer_id = $1",
        customer.customer_id,
    )
    stale = await http.post(url, json=RUN, headers=key(customer, "k-stale"))
    assert stale.status_code == 409
    assert stale.json()["detail"]["code"] == "idempotency_state_unknown"
    fresh_lock = await core.pool.execute(
        "UPDATE idempotency_keys SET locked_at = now() WHERE key = 'k-stale'"
    )
    assert fresh_lock == "UPDATE 1"
    running = await http.post(url, json=RUN, headers=key(customer, "k-stale"))
    assert running.json()["detail"]["code"] == "idempotency_in_progress"

    # after 24 h a key is forgotten: the same key runs (and dials) again
    dials = len(telephony.dials)
    await core.pool.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 s'")
    await core.pool.execute("UPDATE customers SET max_concurrent_calls = 10")
    expired = await http.post(url, json=RUN, headers=key(customer, "k1"))
    assert expired.status_code == 201 and expired.json()["replayed"] is False
    assert len(telephony.dials) == dials + 1
    assert await idempotency.sweep(core.pool) >= 2


async def test_post_calls_takes_an_idempotency_key(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    body = {"target_phone": "+15550100", "brief": "Table for 2"}
    first = await http.post("/calls", json=body, headers=key(customer, "c1"))
    replay = await http.post("/calls", json=body, headers=key(customer, "c1"))
    assert first.status_code == replay.status_code == 201
    assert replay.json()["call"]["call_id"] == first.json()["call"]["call_id"]
    assert len(telephony.dials) == 1
    conflict = await http.post(
        "/calls", json={**body, "brief": "other"}, headers=key(customer, "c1")
    )
    assert conflict.json()["detail"]["code"] == "idempotency_conflict"


async def test_dial_failure_is_replayed_not_redialed(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    telephony.fail_next_dial(retryable=False, message="invalid number")
    url = "/skills/restaurant_booking/run"
    first = await http.post(url, json=RUN, headers=key(customer, "f1"))
    again = await http.post(url, json=RUN, headers=key(customer, "f1"))
    assert first.status_code == again.status_code == 502
    assert again.json()["detail"]["code"] == "DIAL_FAILED"
    assert telephony.dial_attempts == 1


async def test_run_body_must_be_a_json_object(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    for content in (b"[1, 2]", b"not json", b'"text"'):
        response = await http.post(
            "/skills/restaurant_booking/run",
            content=content,
            headers={**key(customer), "Content-Type": "application/json"},
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body"]
