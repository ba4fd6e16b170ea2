"""A call's whole carrier life through production code: the twilio SDK dials the
simulated carrier, which sends signed callbacks to the media process, which hands
them to core over gRPC; REST clients see the result through the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core import main as server
from gateway.app import create_app as create_gateway
from media.server import create_app as create_media
from media.settings import MediaSettings
from sim.carrier import SimCarrier
from sim.twilio_rest import FakeTwilioRest
from telephony.settings import TwilioSettings
from tests import mp3_frames
from tests.conftest import (
    BOOTSTRAP_KEY,
    INTERNAL_TOKEN,
    assert_twilio_wire_clean,
    eventually,
    free_port,
    make_gateway_settings,
    make_settings,
    new_customer,
    serve_asgi,
)

BODY = {"target_phone": "+15550100", "brief": "Table for 2 tomorrow at 19:00 under Anna"}
TOKEN = "e2e-twilio-auth-token"
ACCOUNT = "AC" + "e2e0" * 8


@pytest.fixture
async def world(db_dsn: str) -> AsyncIterator[dict[str, Any]]:
    media_port = free_port()
    async with FakeTwilioRest(ACCOUNT, TOKEN) as rest:
        carrier = SimCarrier(rest, speed=20.0, talk_seconds=2.0)
        twilio = TwilioSettings(
            twilio_account_sid=ACCOUNT,
            twilio_auth_token=TOKEN,
            twilio_api_base_url=rest.base_url,
            public_base_url=f"http://127.0.0.1:{media_port}",
        )
        settings = make_settings(**twilio.model_dump())
        core = await server.start(settings, dsn=db_dsn, port=0)
        core_target = f"127.0.0.1:{core.port}"
        media = MediaSettings(core_grpc_target=core_target, internal_token=INTERNAL_TOKEN)
        try:
            async with (
                serve_asgi(create_media(media, twilio), port=media_port) as media_url,
                serve_asgi(create_gateway(make_gateway_settings(core.port))) as gateway_url,
                httpx.AsyncClient(base_url=gateway_url) as http,
            ):
                yield {
                    "rest": rest,
                    "core": core,
                    "http": http,
                    "media_url": media_url,
                    "carrier": carrier,
                }
        finally:
            await carrier.aclose()
            await core.stop(grace=1)
        assert_twilio_wire_clean(carrier)


async def test_call_completes_and_is_charged(world: dict[str, Any]) -> None:
    core, http, rest = world["core"], world["http"], world["rest"]
    customer = await new_customer(core.pool)
    headers = {"X-API-Key": customer.api_key}
    started = await http.post("/calls", json=BODY, headers=headers)
    assert started.status_code == 201, started.text
    call = started.json()["call"]
    assert call["call_sid"] == rest.calls[0].sid
    form = rest.calls[0].form
    assert form.get("To") == "+15550100"
    assert f'<Parameter name="call_id" value="{call["call_id"]}"' in (form.get("Twiml") or "")

    async def completed() -> bool:
        got = (await http.get(f"/calls/{call['call_id']}", headers=headers)).json()
        return bool(got["status"] == "completed")

    await eventually(completed)
    got = (await http.get(f"/calls/{call['call_id']}", headers=headers)).json()
    assert got["duration_sec"] >= 1 and got["outcome_charge_cents"] == 10
    me = (await http.get("/users/me", headers=headers)).json()
    assert me["current_usage"] == 10


async def test_cancel_hangs_up_through_the_sdk(world: dict[str, Any]) -> None:
    core, http, rest = world["core"], world["http"], world["rest"]
    customer = await new_customer(core.pool)
    headers = {"X-API-Key": customer.api_key}
    call = (await http.post("/calls", json=BODY, headers=headers)).json()["call"]
    cancelled = await http.post(f"/calls/{call['call_id']}/cancel", headers=headers)
    assert cancelled.json() == {"cancelled": True}
    assert [u.form.get("Status") for u in rest.updates] == ["completed"]
    got = (await http.get(f"/calls/{call['call_id']}", headers=headers)).json()
    assert got["status"] == "cancelled"
    assert (await http.get("/users/me", headers=headers)).json()["current_usage"] == 0


async def test_forged_callback_is_refused_and_changes_nothing(world: dict[str, Any]) -> None:
    core, http, rest = world["core"], world["http"], world["rest"]
    customer = await new_customer(core.pool)
    headers = {"X-API-Key": customer.api_key}
    call = (await http.post("/calls", json=BODY, headers=headers)).json()["call"]
    url = f"{world['media_url']}/twilio/status?call_id={call['call_id']}"
    forged = await rest.post_signed(
        url,
        {"CallSid": call["call_sid"], "CallStatus": "failed", "AccountSid": ACCOUNT},
        signing_token="not-the-token",
    )
    assert forged.status_code == 403
    status = await core.pool.fetchval(
        "SELECT status FROM calls WHERE call_id = $1", call["call_id"]
    )
    assert status != "failed"


async def test_the_recording_downloads_as_mp3_and_is_announced_once(
    world: dict[str, Any],
) -> None:
    """The admin download may race the carrier's recording callback (a lazy lookup wins
    when it comes first): either way one `recording_ready`, the same stored URL, MP3 bytes."""
    core, http, rest = world["core"], world["http"], world["rest"]
    customer = await new_customer(core.pool)
    call = (await http.post("/calls", json=BODY, headers={"X-API-Key": customer.api_key})).json()
    call_id = call["call"]["call_id"]
    url = f"/calls/{call_id}/recording"
    admin = {"X-API-Key": BOOTSTRAP_KEY}

    async def served() -> bool:
        return (await http.get(url, headers=admin)).status_code == 200

    await eventually(served, limit=30)
    got = await http.get(url, params={"download": "true"}, headers=admin)
    (recording,) = rest.recordings.values()
    assert got.content == recording.mp3 and got.content[:2] == b"\xff\xfb"
    assert got.headers["content-type"] == "audio/mpeg"
    assert got.headers["content-length"] == str(len(recording.mp3))
    assert mp3_frames.duration_s(got.content) > 0

    async def carrier_done() -> bool:
        return world["carrier"].calls_in_progress == 0

    await eventually(carrier_done, limit=30)  # the recording callback, if any, was handled
    events = await core.pool.fetch(
        "SELECT payload FROM call_events WHERE call_id = $1 AND type = 'recording_ready'",
        call_id,
    )
    assert [e["payload"]["recording_url"] for e in events] == [url]
    stored = await core.pool.fetchrow(
        "SELECT recording_sid, recording_url FROM calls WHERE call_id = $1", call_id
    )
    assert stored is not None and stored["recording_sid"] == recording.sid
    assert stored["recording_url"] == (
        f"{rest.base_url}/2010-04-01/Accounts/{ACCOUNT}/Recordings/{recording.sid}"
    )
