"""POST/GET /calls and cancel through gateway → core → PostgreSQL, with a fake carrier."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import grpc
import httpx
import pytest
from callagent.v1 import telephony_pb2, telephony_pb2_grpc

from core.app import api_keys
from core.main import Core
from tests.conftest import INTERNAL_TOKEN, new_customer
from tests.fakes.telephony import FakeTelephony
from tests.integration.test_ask_user import session

BODY = {"target_phone": "+15550100", "brief": "Table for 2 tomorrow at 19:00 under Anna"}


def key(customer: api_keys.CreatedKey) -> dict[str, str]:
    return {"X-API-Key": customer.api_key}


async def usage(core: Core, customer_id: str) -> int:
    return int(
        await core.pool.fetchval(
            "SELECT current_usage FROM customers WHERE customer_id = $1", customer_id
        )
    )


async def report(channel: grpc.aio.Channel, **fields: Any) -> bool:
    stub = telephony_pb2_grpc.TelephonyEventServiceStub(channel)
    reply = await stub.ReportTelephonyEvent(
        telephony_pb2.ReportTelephonyEventRequest(**fields),
        metadata=(("x-internal-token", INTERNAL_TOKEN),),
    )
    return bool(reply.applied)


async def test_direct_start_dials_and_reserves(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    response = await http.post("/calls", json=BODY, headers=key(customer))
    assert response.status_code == 201, response.text
    body = response.json()
    call = body["call"]
    assert call["status"] == "dialing"
    assert call["call_sid"] == telephony.dials[0].call_sid
    assert telephony.dials[0].to == "+15550100"
    assert telephony.dials[0].call_id == call["call_id"]
    assert body["credits_reserved"] == 100
    assert body["task_id"] == call["task_id"]
    assert await usage(core, customer.customer_id) == 100


@pytest.mark.parametrize(
    ("patch", "status", "code"),
    [
        ({"target_phone": "+1 234"}, 400, "INVALID_ARGUMENT_PHONE"),
        ({"target_phone": "15551234567"}, 400, "INVALID_ARGUMENT_PHONE"),
        ({"target_phone": "+999123456789"}, 400, "INVALID_ARGUMENT_PHONE"),
        ({"brief": "   "}, 400, "INVALID_ARGUMENT_BRIEF"),
        ({"language": "de"}, 400, "INVALID_ARGUMENT_FIELD"),
        ({"brief": ""}, 422, None),
        ({"ask_user_mode": "telegram"}, 422, None),
        ({"kind": "pizza"}, 422, None),
    ],
)
async def test_bad_input(
    http: httpx.AsyncClient,
    core: Core,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
    patch: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    response = await http.post("/calls", json={**BODY, **patch}, headers=key(customer))
    assert response.status_code == status, response.text
    if code:
        assert response.json()["detail"]["code"] == code
    assert telephony.dials == []
    assert await core.pool.fetchval("SELECT count(*) FROM calls") == 0
    assert await usage(core, customer.customer_id) == 0


async def test_maintenance_gates_new_calls(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey
) -> None:
    await core.pool.execute(
        "UPDATE maintenance SET active = true, message = 'carrier upgrade', "
        "resume_at = '2030-01-01T10:00:00+00'"
    )
    response = await http.post("/calls", json=BODY, headers=key(customer))
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail["code"] == "MAINTENANCE"
    assert detail["message"] == "carrier upgrade"
    assert detail["resume_at"].startswith("2030-01-01T10:00:00")


async def test_out_of_quota_is_402(http: httpx.AsyncClient, core: Core) -> None:
    poor = await new_customer(core.pool, quota=50)
    response = await http.post("/calls", json=BODY, headers=key(poor))
    assert response.status_code == 402
    assert response.json()["detail"]["code"] == "QUOTA_EXCEEDED"
    assert await core.pool.fetchval("SELECT count(*) FROM calls") == 0


async def test_cap_race_gives_exactly_one_call(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    responses = await asyncio.gather(
        *(http.post("/calls", json=BODY, headers=key(customer)) for _ in range(50))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1
    assert codes.count(409) == 49
    refused = next(r for r in responses if r.status_code == 409).json()["detail"]
    assert refused["code"] == "CONCURRENCY_LIMIT"
    assert "/users/me/limits" in refused["message"]
    assert len(telephony.dials) == 1
    assert await usage(core, customer.customer_id) == 100


async def test_dial_failure_is_502_and_releases(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    telephony.fail_next_dial(retryable=False, message="invalid To number", code=21211)
    response = await http.post("/calls", json=BODY, headers=key(customer))
    assert response.status_code == 502
    assert response.json()["detail"]["code"] == "DIAL_FAILED"
    row = await core.pool.fetchrow("SELECT status, outcome_summary FROM calls")
    assert row is not None and row["status"] == "failed"
    assert await usage(core, customer.customer_id) == 0
    # the cap slot is free again
    assert (await http.post("/calls", json=BODY, headers=key(customer))).status_code == 201


async def test_list_get_and_foreign_404(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey
) -> None:
    await http.put("/users/me/limits", json={"max_concurrent_calls": 5}, headers=key(customer))
    ids = []
    for _ in range(3):
        ids.append((await http.post("/calls", json=BODY, headers=key(customer))).json())
    call_ids = [b["call"]["call_id"] for b in ids]
    listed = (await http.get("/calls", headers=key(customer))).json()
    assert [c["call_id"] for c in listed] == call_ids[::-1]
    assert listed[0]["transcript_full"] is None
    assert len((await http.get("/calls?limit=2", headers=key(customer))).json()) == 2
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    since = await http.get("/calls", params={"since": future}, headers=key(customer))
    assert since.json() == []
    bad = await http.get("/calls?limit=0", headers=key(customer))
    assert bad.status_code == 400 and bad.json()["detail"]["code"] == "INVALID_ARGUMENT_LIMIT"

    one = (await http.get(f"/calls/{call_ids[0]}", headers=key(customer))).json()
    assert one["transcript_full"] == [] and one["supervisor_decisions"] == []
    assert one["recording_url"] is None and one["has_recording"] is False

    other = await new_customer(core.pool)
    foreign = await http.get(f"/calls/{call_ids[0]}", headers=key(other))
    missing = await http.get("/calls/call_nope", headers=key(other))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    assert (await http.get("/calls", headers=key(other))).json() == []


async def test_carrier_events_drive_the_call_and_capture(
    http: httpx.AsyncClient, core: Core, channel: grpc.aio.Channel, customer: api_keys.CreatedKey
) -> None:
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    sid, call_id = call["call_sid"], call["call_id"]
    assert await report(channel, kind="status", call_sid=sid, status="ringing")
    assert await report(channel, kind="status", call_sid=sid, status="in_progress")
    assert not await report(channel, kind="status", call_sid=sid, status="ringing")  # stale
    async with session(core, call_id) as media:  # the agent talked and reported
        await media.next()
        media.hung_up()
    assert await report(channel, kind="status", call_sid=sid, status="completed", duration_sec=61)
    assert not await report(channel, kind="status", call_sid=sid, status="completed")  # repeat
    assert not await report(channel, kind="status", call_sid=sid, status="failed")  # too late
    assert await report(
        channel,
        kind="recording",
        call_sid=sid,
        call_id=call_id,
        recording_sid="RE1",
        recording_url="https://api.twilio.com/x/RE1",
        recording_status="completed",
    )
    got = (await http.get(f"/calls/{call_id}", headers=key(customer))).json()
    assert got["status"] == "completed"
    assert got["duration_sec"] == 61
    assert got["outcome_charge_cents"] == 20  # two started minutes at 10 cents
    assert got["started_at"] and got["ended_at"]
    assert got["has_recording"] is True
    assert got["recording_url"] == f"/calls/{call_id}/recording"
    assert await usage(core, customer.customer_id) == 20


async def test_an_answered_call_no_media_attached_to_is_failed_not_charged(
    http: httpx.AsyncClient, core: Core, channel: grpc.aio.Channel, customer: api_keys.CreatedKey
) -> None:
    """Its stream was refused (a draining media pod) or media could not reach core: no
    agent ever spoke, so the carrier's `completed` fails it and nothing is charged."""
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    sid, call_id = call["call_sid"], call["call_id"]
    assert await report(channel, kind="status", call_sid=sid, status="in_progress")
    assert await report(channel, kind="status", call_sid=sid, status="completed", duration_sec=4)
    got = (await http.get(f"/calls/{call_id}", headers=key(customer))).json()
    assert (got["status"], got["outcome_type"], got["outcome_charge_cents"]) == (
        "failed",
        "failed",
        0,
    )
    assert got["outcome_summary"].startswith("answered, but no media session ever attached")
    assert got["duration_sec"] == 4 and got["ended_at"]
    assert await usage(core, customer.customer_id) == 0


async def test_internal_rpc_needs_internal_token(
    channel: grpc.aio.Channel, customer: api_keys.CreatedKey
) -> None:
    stub = telephony_pb2_grpc.TelephonyEventServiceStub(channel)
    for metadata in ((("x-api-key", customer.api_key),), (("x-internal-token", "wrong"),)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ReportTelephonyEvent(
                telephony_pb2.ReportTelephonyEventRequest(kind="status", call_sid="CA1"),
                metadata=metadata,
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("reached", ["dialing", "ringing", "in_progress"])
async def test_cancel_live_call_hangs_up_and_releases_once(
    http: httpx.AsyncClient,
    core: Core,
    channel: grpc.aio.Channel,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
    reached: str,
) -> None:
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    if reached != "dialing":
        await report(channel, kind="status", call_sid=call["call_sid"], status=reached)
    first = await http.post(f"/calls/{call['call_id']}/cancel", headers=key(customer))
    again = await http.post(f"/calls/{call['call_id']}/cancel", headers=key(customer))
    assert first.json() == {"cancelled": True}
    assert again.json() == {"cancelled": False}
    assert telephony.hangups == [call["call_sid"]]
    # the carrier's own completion afterwards must not settle twice
    await report(
        channel, kind="status", call_sid=call["call_sid"], status="completed", duration_sec=30
    )
    got = (await http.get(f"/calls/{call['call_id']}", headers=key(customer))).json()
    assert got["status"] == "cancelled"
    assert await usage(core, customer.customer_id) == 0
    statuses = await core.pool.fetch("SELECT status FROM credit_reservations")
    assert [r["status"] for r in statuses] == ["released"]


async def test_cancel_unknown_foreign_and_final_is_false(
    http: httpx.AsyncClient, core: Core, channel: grpc.aio.Channel, customer: api_keys.CreatedKey
) -> None:
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    other = await new_customer(core.pool)
    assert (await http.post(f"/calls/{call['call_id']}/cancel", headers=key(other))).json() == {
        "cancelled": False
    }
    assert (await http.post("/calls/call_nope/cancel", headers=key(customer))).json() == {
        "cancelled": False
    }
    await report(channel, kind="status", call_sid=call["call_sid"], status="busy")
    assert (await http.post(f"/calls/{call['call_id']}/cancel", headers=key(customer))).json() == {
        "cancelled": False
    }
