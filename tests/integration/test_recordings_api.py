"""GET /calls/{id}/recording through gateway → core → the carrier port: admin-only, streamed
chunk by chunk with the carrier's content type and length, and remembered and announced
(`recording_ready`) exactly once whether the callback or a lazy lookup finds it first."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx

from core.app import api_keys
from core.main import Core
from tests.conftest import BOOTSTRAP_KEY, eventually
from tests.fakes.telephony import FakeTelephony
from tests.integration.test_calls_api import BODY, key, report

ADMIN = {"X-API-Key": BOOTSTRAP_KEY}


async def recording_events(core: Core, call_id: str) -> list[dict[str, Any]]:
    rows = await core.pool.fetch(
        "SELECT payload FROM call_events WHERE call_id = $1 AND type = 'recording_ready'",
        call_id,
    )
    return [dict(r["payload"]) for r in rows]


async def stored(core: Core, call_id: str) -> tuple[str | None, str | None, float | None]:
    row = await core.pool.fetchrow(
        "SELECT recording_sid, recording_url, recording_duration FROM calls WHERE call_id = $1",
        call_id,
    )
    assert row is not None
    return row["recording_sid"], row["recording_url"], row["recording_duration"]


async def test_recording_is_admin_only_and_streams_chunk_by_chunk(
    http: httpx.AsyncClient,
    core: Core,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
) -> None:
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    url = f"/calls/{call['call_id']}/recording"
    owner = await http.get(url, headers=key(customer))
    missing = await http.get("/calls/call_nope/recording", headers=key(customer))
    assert owner.status_code == missing.status_code == 404
    assert owner.content == missing.content
    pending = await http.get(url, headers=ADMIN)
    assert pending.status_code == 202 and pending.json() == {"status": "recording_pending"}

    media = b"ID3" + bytes(range(256)) * 600  # 150 kB
    telephony.add_recording(call["call_sid"], media)
    telephony.recording_chunk = 16 * 1024
    telephony.recording_gate = gate = asyncio.Event()  # the carrier sends one chunk, then waits
    params = {"api_key": BOOTSTRAP_KEY, "download": "true"}
    async with http.stream("GET", url, params=params) as got:
        assert got.status_code == 200
        assert got.headers["content-type"] == "audio/mpeg"
        assert got.headers["content-length"] == str(len(media))  # the carrier's, passed on
        assert got.headers["content-disposition"].startswith("attachment")
        body = got.aiter_raw()
        async with asyncio.timeout(10):
            first = await anext(body)  # arrives while the carrier still holds the rest
        assert first and len(first) <= telephony.recording_chunk and media.startswith(first)
        gate.set()
        rest = b"".join([chunk async for chunk in body])
    assert first + rest == media
    await eventually(lambda: _closed(telephony))


async def _closed(telephony: FakeTelephony) -> bool:
    return telephony.recordings_open == 0


async def test_a_client_that_leaves_mid_download_closes_the_carrier_download(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    telephony.add_recording(call["call_sid"], bytes(200_000))
    telephony.recording_chunk = 16 * 1024
    telephony.recording_gate = asyncio.Event()  # never released: the download stalls
    async with http.stream("GET", f"/calls/{call['call_id']}/recording", headers=ADMIN) as got:
        async with asyncio.timeout(10):
            await anext(got.aiter_raw())
        assert telephony.recordings_open == 1
    await eventually(lambda: _closed(telephony))


async def test_lazy_fetch_remembers_and_announces_the_recording_once(
    http: httpx.AsyncClient,
    core: Core,
    channel: grpc.aio.Channel,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
) -> None:
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    call_id, call_sid = call["call_id"], call["call_sid"]
    media = b"\xff\xfb" + bytes(5000)
    sid = telephony.add_recording(call_sid, media, duration_sec=42)
    url = f"/calls/{call_id}/recording"
    assert await stored(core, call_id) == (None, None, None)

    # The recording callback never came: the first download finds it through the carrier.
    assert (await http.get(url, headers=ADMIN)).content == media
    provider_url = telephony.recordings[call_sid][0].url
    assert await stored(core, call_id) == (sid, provider_url, 42)
    ready = [{"recording_url": url, "duration_sec": 42}]
    assert await recording_events(core, call_id) == ready
    # A second download uses what was stored; the late callback changes nothing.
    assert (await http.get(url, headers=ADMIN)).content == media
    late = await report(
        channel,
        kind="recording",
        call_sid=call_sid,
        call_id=call_id,
        recording_sid=sid,
        recording_url="https://api.twilio.com/late/" + sid,
        recording_duration_sec=42,
        recording_status="completed",
    )
    assert late is False
    assert await stored(core, call_id) == (sid, provider_url, 42)
    assert await recording_events(core, call_id) == ready
    got = (await http.get(f"/calls/{call_id}", headers=key(customer))).json()
    assert got["has_recording"] is True and got["recording_url"] == url


async def test_the_callback_announces_the_recording_once(
    http: httpx.AsyncClient,
    core: Core,
    channel: grpc.aio.Channel,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
) -> None:
    call = (await http.post("/calls", json=BODY, headers=key(customer))).json()["call"]
    call_id, call_sid = call["call_id"], call["call_sid"]
    sid = telephony.add_recording(call_sid, b"\xff\xfb" + bytes(100), duration_sec=3)
    callback = {
        "kind": "recording",
        "call_sid": call_sid,
        "call_id": call_id,
        "recording_sid": sid,
        "recording_url": "https://api.twilio.com/x/" + sid,
        "recording_duration_sec": 3,
    }
    assert not await report(channel, **callback, recording_status="in-progress")
    assert await recording_events(core, call_id) == []
    assert await report(channel, **callback, recording_status="completed")
    assert not await report(channel, **callback, recording_status="completed")  # a repeat
    assert await stored(core, call_id) == (sid, callback["recording_url"], 3)
    # Downloading afterwards needs no lookup and announces nothing more.
    assert (await http.get(f"/calls/{call_id}/recording", headers=ADMIN)).status_code == 200
    expected = [{"recording_url": f"/calls/{call_id}/recording", "duration_sec": 3}]
    assert await recording_events(core, call_id) == expected
