"""The Twilio callback routes: signature checks, typed events, status mapping.

The app runs in-process (httpx's ASGI transport); callbacks are signed with the twilio
SDK's own `RequestValidator.compute_signature`, as Twilio signs them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.datastructures import MultiDict
from twilio.request_validator import RequestValidator

from media.twilio import webhooks as twilio_webhooks
from media.twilio.webhooks import TelephonyEvent

TOKEN = "unit-test-auth-token"
PUBLIC = "https://media.example.test"
CALL_SID = "CA" + "a" * 32


class RecordingSink:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[TelephonyEvent] = []
        self.fail = fail

    async def deliver(self, event: TelephonyEvent) -> None:
        if self.fail:
            raise ConnectionError("core unreachable")
        self.events.append(event)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def client(sink: RecordingSink) -> AsyncIterator[httpx.AsyncClient]:
    app = twilio_webhooks.twilio_webhook_app(TOKEN, PUBLIC + "/", sink)
    # The Host Twilio's request arrives with (a proxy's) differs from PUBLIC on purpose.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://internal:8081") as c:
        yield c


def _signed(path_and_query: str, params: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    return {
        "X-Twilio-Signature": RequestValidator(token).compute_signature(
            PUBLIC + path_and_query, params
        )
    }


def _status(status: str, **extra: str) -> dict[str, str]:
    return {
        "CallSid": CALL_SID,
        "AccountSid": "AC" + "1" * 32,
        "CallStatus": status,
        "SequenceNumber": "3",
        "Direction": "outbound-api",
        **extra,
    }


async def test_valid_status_callback_becomes_a_typed_event(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    params = _status("completed", CallDuration="17", From="+15550002222")
    path = "/twilio/status?call_id=call_42"
    resp = await client.post(path, data=params, headers=_signed(path, params))

    assert resp.status_code == 204, resp.text
    assert sink.events == [
        TelephonyEvent(
            kind="status",
            call_sid=CALL_SID,
            call_id="call_42",
            status="completed",
            sequence_number=3,
            duration_sec=17,
            answered_by=None,
            recording_sid=None,
            recording_url=None,
            recording_duration=None,
            raw=params,
        )
    ]


async def test_query_string_is_part_of_the_signed_url(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    params = _status("ringing")
    path = "/twilio/status?call_id=a%26b&x=1"
    ok = await client.post(path, data=params, headers=_signed(path, params))
    assert ok.status_code == 204
    assert sink.events[0].call_id == "a&b"
    # Signed for the URL without its query: not the URL requested, so refused.
    forged = await client.post(path, data=params, headers=_signed("/twilio/status", params))
    assert forged.status_code == 403
    assert len(sink.events) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": ""},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        _signed("/twilio/status", _status("completed"), token="someone-elses-token"),
    ],
    ids=["missing", "empty", "garbage", "wrong-token"],
)
async def test_missing_or_forged_signature_is_403_and_reaches_nobody(
    client: httpx.AsyncClient, sink: RecordingSink, headers: dict[str, str]
) -> None:
    resp = await client.post("/twilio/status", data=_status("completed"), headers=headers)
    assert resp.status_code == 403
    assert resp.json()["detail"]["code"] == "INVALID_TWILIO_SIGNATURE"
    assert resp.json()["detail"]["message"]
    assert sink.events == []


async def test_tampered_body_is_refused(client: httpx.AsyncClient, sink: RecordingSink) -> None:
    params = _status("in-progress")
    headers = _signed("/twilio/status", params)
    resp = await client.post(
        "/twilio/status", data={**params, "CallStatus": "completed"}, headers=headers
    )
    assert resp.status_code == 403 and sink.events == []


async def test_signature_over_the_internal_url_is_refused(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    params = _status("ringing")
    sig = RequestValidator(TOKEN).compute_signature("http://internal:8081/twilio/status", params)
    resp = await client.post("/twilio/status", data=params, headers={"X-Twilio-Signature": sig})
    assert resp.status_code == 403 and sink.events == []


async def test_amd_and_recording_callbacks(client: httpx.AsyncClient, sink: RecordingSink) -> None:
    amd = {"CallSid": CALL_SID, "AnsweredBy": "machine_end_beep", "MachineDetectionDuration": "900"}
    path = "/twilio/amd?call_id=c1"
    assert (await client.post(path, data=amd, headers=_signed(path, amd))).status_code == 204
    rec = {
        "CallSid": CALL_SID,
        "RecordingSid": "RE" + "b" * 32,
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
        "RecordingStatus": "completed",
        "RecordingDuration": "12",
    }
    path = "/twilio/recording-status?call_id=c1"
    assert (await client.post(path, data=rec, headers=_signed(path, rec))).status_code == 204

    first, second = sink.events
    assert (first.kind, first.answered_by, first.status, first.call_id) == (
        "amd",
        "machine_end_beep",
        None,
        "c1",
    )
    assert (second.kind, second.recording_sid, second.recording_duration) == (
        "recording",
        "RE" + "b" * 32,
        12,
    )
    assert second.recording_status == "completed" and second.recording_url == rec["RecordingUrl"]


async def test_repeated_form_keys_are_all_signed(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    fields = [*_status("ringing").items(), ("Extra", "b"), ("Extra", "a")]
    url = PUBLIC + "/twilio/status"
    body = urllib.parse.urlencode(fields)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    only_last = RequestValidator(TOKEN).compute_signature(url, dict(fields))
    bad = await client.post(
        "/twilio/status", content=body, headers={**form, "X-Twilio-Signature": only_last}
    )
    assert bad.status_code == 403
    every_value = RequestValidator(TOKEN).compute_signature(url, MultiDict(fields))
    good = await client.post(
        "/twilio/status", content=body, headers={**form, "X-Twilio-Signature": every_value}
    )
    assert good.status_code == 204
    assert len(sink.events) == 1 and sink.events[0].raw["Extra"] == "a"


async def test_callback_without_call_sid_is_400(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    params = {"CallStatus": "ringing"}
    resp = await client.post(
        "/twilio/status", data=params, headers=_signed("/twilio/status", params)
    )
    assert resp.status_code == 400 and sink.events == []


async def test_sink_failure_answers_503() -> None:
    app = twilio_webhooks.twilio_webhook_app(TOKEN, PUBLIC, RecordingSink(fail=True))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://internal") as c:
        params = _status("ringing")
        resp = await c.post(
            "/twilio/status", data=params, headers=_signed("/twilio/status", params)
        )
    assert resp.status_code == 503
    assert resp.json()["detail"]["code"] == "EVENT_NOT_DELIVERED"


async def test_get_is_not_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/twilio/status")).status_code == 405


@pytest.mark.parametrize(
    ("twilio", "ours"),
    [
        ("queued", "dialing"),
        ("initiated", "dialing"),
        ("ringing", "ringing"),
        ("in-progress", "in_progress"),
        ("completed", "completed"),
        ("busy", "busy"),
        ("no-answer", "no_answer"),
        ("failed", "failed"),
        ("canceled", "cancelled"),
        ("answered", None),
        ("", None),
    ],
)
def test_map_call_status(twilio: str, ours: str | None) -> None:
    assert twilio_webhooks.map_call_status(twilio) == ours


def test_websocket_upgrade_signature() -> None:
    url = "wss://media.example.test/twilio/stream"
    header = RequestValidator(TOKEN).compute_signature(url, {})
    assert twilio_webhooks.signature_valid_for_websocket(TOKEN, url, header)
    assert not twilio_webhooks.signature_valid_for_websocket("other-token", url, header)
    assert not twilio_webhooks.signature_valid_for_websocket(TOKEN, url + "x", header)
    assert not twilio_webhooks.signature_valid_for_websocket(TOKEN, url, None)
    assert not twilio_webhooks.signature_valid_for_websocket(TOKEN, url, "")
    signed_https = RequestValidator(TOKEN).compute_signature(
        "https://media.example.test/twilio/stream", {}
    )
    assert not twilio_webhooks.signature_valid_for_websocket(TOKEN, url, signed_https)
