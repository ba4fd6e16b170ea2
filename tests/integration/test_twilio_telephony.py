"""TwilioTelephony through the real twilio SDK against the loopback fake of Twilio REST,
and Twilio's signed callbacks end to end into the webhook app served by uvicorn."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from media.twilio import webhooks as twilio_webhooks
from telephony import port as telephony
from telephony import stream_tokens
from telephony.twilio_rest import RECORDING_CHUNK, STREAM_TOKEN_TTL_SEC, TwilioTelephony
from tests.fakes.telephony import FakeTelephony
from tests.fakes.twilio_rest import SILENT_MP3_FRAME, FakeTwilioRest, LoopbackServer

FROM = "+15550002222"
TO = "+15550100001"
PUBLIC = "https://media.example.test"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilioRest]:
    async with FakeTwilioRest() as fake:
        yield fake


@pytest.fixture
async def adapter(fake: FakeTwilioRest) -> AsyncIterator[TwilioTelephony]:
    tel = TwilioTelephony(fake.account_sid, fake.auth_token, FROM, PUBLIC, fake.base_url)
    yield tel
    await tel.aclose()


def _stream(twiml: str) -> ET.Element:
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    assert stream is not None, twiml
    return stream


async def test_dial_sends_the_exact_create_form(
    fake: FakeTwilioRest, adapter: TwilioTelephony
) -> None:
    sid = await adapter.dial("call_123", TO)

    assert sid.startswith("CA") and len(sid) == 34
    (call,) = fake.calls
    assert call.sid == sid
    form = call.form
    assert form.get("To") == TO
    assert form.get("From") == FROM
    assert form.getall("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    assert form.get("StatusCallback") == f"{PUBLIC}/twilio/status?call_id=call_123"
    assert form.get("StatusCallbackMethod") == "POST"
    assert form.get("Record") == "true"
    assert form.get("RecordingTrack") == "outbound"
    assert form.get("RecordingStatusCallback") == (
        f"{PUBLIC}/twilio/recording-status?call_id=call_123"
    )
    assert form.get("MachineDetection") == "DetectMessageEnd"
    assert form.get("AsyncAmd") == "true"
    assert form.get("AsyncAmdStatusCallback") == f"{PUBLIC}/twilio/amd?call_id=call_123"
    assert form.get("Timeout") == "30"
    assert form.get("Url") is None
    stream = _stream(form.get("Twiml") or "")
    assert stream.get("url") == "wss://media.example.test/twilio/stream"
    assert "?" not in (stream.get("url") or "")
    params = {p.get("name"): p.get("value") for p in stream.iter("Parameter")}
    assert set(params) == {"call_id", "stream_token"} and params["call_id"] == "call_123"
    # The token binds the call id (the SID is not known yet) for the stream's start only.
    key = stream_tokens.stream_key(fake.auth_token)
    token = params["stream_token"]
    stream_tokens.check(key, token, "call_123", sid, now=time.time())
    stream_tokens.check(key, token, "call_123", "CA" + "9" * 32, now=time.time())
    later = time.time() + STREAM_TOKEN_TTL_SEC + 1
    for call_id, now in (("call_124", time.time()), ("call_123", later)):
        with pytest.raises(stream_tokens.StreamTokenRefused):
            stream_tokens.check(key, token, call_id, sid, now=now)


async def test_call_id_is_escaped_in_twiml_and_callback_urls(
    fake: FakeTwilioRest, adapter: TwilioTelephony
) -> None:
    odd = 'a&b "c" <d>=e'
    await adapter.dial(odd, TO)
    form = fake.calls[0].form
    params = {p.get("name"): p.get("value") for p in _stream(form.get("Twiml") or "")}
    assert params["call_id"] == odd
    stream_tokens.check(
        stream_tokens.stream_key(fake.auth_token), params["stream_token"], odd, "", now=time.time()
    )
    query = urllib.parse.urlsplit(form.get("StatusCallback") or "").query
    assert urllib.parse.parse_qs(query) == {"call_id": [odd]}


async def test_hang_up_completes_the_call_and_tolerates_an_ended_call(
    fake: FakeTwilioRest, adapter: TwilioTelephony
) -> None:
    sid = await adapter.dial("call_1", TO)
    await adapter.hang_up(sid)
    assert fake.call(sid).status == "completed"
    assert [(u.call_sid, u.form.fields) for u in fake.updates] == [
        (sid, (("Status", "completed"),))
    ]
    await adapter.hang_up(sid)  # Twilio answers 21220 now; that is not an error
    assert len(fake.updates) == 2


async def test_hang_up_of_an_unknown_call_is_an_error(adapter: TwilioTelephony) -> None:
    with pytest.raises(telephony.TelephonyError) as info:
        await adapter.hang_up("CA" + "f" * 32)
    assert (info.value.status, info.value.code, info.value.retryable) == (404, 20404, False)


async def test_send_dtmf_plays_digits_then_reconnects_the_stream(
    fake: FakeTwilioRest, adapter: TwilioTelephony
) -> None:
    sid = await adapter.dial("call_7", TO)
    await adapter.send_dtmf(sid, "call_7", "ww12#")

    (update,) = fake.updates
    assert update.form.names() == {"Twiml"}
    root = ET.fromstring(update.form.get("Twiml") or "")
    assert [child.tag for child in root] == ["Play", "Connect"]
    assert root[0].get("digits") == "ww12#"
    stream = _stream(update.form.get("Twiml") or "")
    assert stream.get("url") == "wss://media.example.test/twilio/stream"
    params = {p.get("name"): p.get("value") for p in stream}
    assert set(params) == {"call_id", "stream_token"} and params["call_id"] == "call_7"
    # The re-connect's token is bound to the call's SID as well: no other stream can use it.
    key = stream_tokens.stream_key(fake.auth_token)
    stream_tokens.check(key, params["stream_token"], "call_7", sid, now=time.time())
    with pytest.raises(stream_tokens.StreamTokenRefused):
        stream_tokens.check(key, params["stream_token"], "call_7", "CA" + "9" * 32, now=time.time())
    assert fake.call(sid).digits == ["ww12#"]


async def test_a_media_pods_dtmf_reconnect_names_it_as_the_owner_and_binds_it(
    fake: FakeTwilioRest,
) -> None:
    owner = "ws://10.0.3.7:8081"
    tel = TwilioTelephony(
        fake.account_sid, fake.auth_token, FROM, PUBLIC, fake.base_url, stream_owner=owner
    )
    try:
        sid = await tel.dial("call_7", TO)
        first = {
            p.get("name"): p.get("value") for p in _stream(fake.call(sid).form.get("Twiml") or "")
        }
        await tel.send_dtmf(sid, "call_7", "1")
    finally:
        await tel.aclose()
    assert set(first) == {"call_id", "stream_token"}  # the first stream names no owner
    (update,) = fake.updates
    params = {p.get("name"): p.get("value") for p in _stream(update.form.get("Twiml") or "")}
    assert set(params) == {"call_id", "stream_token", "stream_owner"}
    assert params["stream_owner"] == owner
    key = stream_tokens.stream_key(fake.auth_token)
    token = params["stream_token"]
    now = time.time()
    assert stream_tokens.check(key, token, "call_7", sid, now=now, owner=owner) == owner
    with pytest.raises(stream_tokens.StreamTokenRefused):
        stream_tokens.check(key, token, "call_7", sid, now=now, owner="ws://10.0.9.9:8081")


async def test_send_dtmf_refuses_unplayable_digits_without_calling_twilio(
    fake: FakeTwilioRest, adapter: TwilioTelephony
) -> None:
    sid = await adapter.dial("call_7", TO)
    with pytest.raises(telephony.TelephonyError) as info:
        await adapter.send_dtmf(sid, "call_7", "1-2")
    assert info.value.retryable is False
    assert fake.updates == []


async def test_send_dtmf_to_an_ended_call_is_not_retryable(
    fake: FakeTwilioRest, adapter: TwilioTelephony
) -> None:
    sid = await adapter.dial("call_7", TO)
    await adapter.hang_up(sid)
    with pytest.raises(telephony.TelephonyError) as info:
        await adapter.send_dtmf(sid, "call_7", "1")
    assert (info.value.code, info.value.retryable) == (21220, False)


async def test_a_400_refusal_is_not_retryable(
    fake: FakeTwilioRest, adapter: TwilioTelephony
) -> None:
    fake.fail_next_create(400, 21211, "The 'To' number +1555 is not a valid phone number.")
    with pytest.raises(telephony.TelephonyError) as info:
        await adapter.dial("call_1", TO)
    assert (info.value.status, info.value.code, info.value.retryable) == (400, 21211, False)
    assert "not a valid phone number" in info.value.message
    assert [c.sid for c in fake.calls] == [None]


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_5xx_or_429_is_retryable(
    fake: FakeTwilioRest, adapter: TwilioTelephony, status: int
) -> None:
    fake.fail_next_create(status, 20500, "Internal Server Error")
    with pytest.raises(telephony.TelephonyError) as info:
        await adapter.dial("call_1", TO)
    assert (info.value.status, info.value.retryable) == (status, True)
    sid = await adapter.dial("call_1", TO)  # the script was for one request only
    assert fake.calls[-1].sid == sid


async def test_wrong_credentials_are_not_retryable(fake: FakeTwilioRest) -> None:
    tel = TwilioTelephony(fake.account_sid, "wrong-token", FROM, PUBLIC, fake.base_url)
    try:
        with pytest.raises(telephony.TelephonyError) as info:
            await tel.dial("call_1", TO)
    finally:
        await tel.aclose()
    assert (info.value.status, info.value.code, info.value.retryable) == (401, 20003, False)
    assert fake.unauthorized_requests == 1 and fake.calls == []
    assert "wrong-token" not in repr(info.value) and "wrong-token" not in repr(tel)


async def test_a_refused_connection_is_retryable() -> None:
    async with FakeTwilioRest() as gone:
        base, sid, token = gone.base_url, gone.account_sid, gone.auth_token
    tel = TwilioTelephony(sid, token, FROM, PUBLIC, base)
    try:
        with pytest.raises(telephony.TelephonyError) as info:
            await tel.dial("call_1", TO)
    finally:
        await tel.aclose()
    assert info.value.retryable is True and info.value.status is None


async def test_recordings_are_listed_and_fetched_with_basic_auth(
    fake: FakeTwilioRest, adapter: TwilioTelephony
) -> None:
    sid = await adapter.dial("call_1", TO)
    other = await adapter.dial("call_2", TO)
    assert await adapter.list_recordings(sid) == []
    media = SILENT_MP3_FRAME * 400  # 167 kB: more than two of the adapter's reads
    stored = fake.add_recording(sid, media, duration_sec=7)
    fake.add_recording(other)

    url = f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Recordings/{stored.sid}"
    assert await adapter.list_recordings(sid) == [
        telephony.Recording(stored.sid, sid, "completed", 7, url)
    ]
    async with adapter.open_recording(stored.sid) as got:
        assert (got.content_type, got.content_length) == ("audio/mpeg", len(media))
        chunks = [chunk async for chunk in got.chunks]
    assert b"".join(chunks) == media
    assert len(chunks) >= 3 and max(map(len, chunks)) <= RECORDING_CHUNK
    with pytest.raises(telephony.TelephonyError) as info:
        async with adapter.open_recording("RE" + "0" * 32):
            pass
    assert (info.value.status, info.value.retryable) == (404, False)


async def test_the_fake_serves_each_format_as_what_it_is(fake: FakeTwilioRest) -> None:
    wav = b"RIFF" + bytes(40)
    stored = fake.add_recording("CA1", SILENT_MP3_FRAME * 2, wav=wav)
    mp3_only = fake.add_recording("CA2", SILENT_MP3_FRAME)
    base = f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Recordings"
    auth = (fake.account_sid, fake.auth_token)
    async with httpx.AsyncClient(auth=auth, trust_env=False) as client:
        mp3 = await client.get(f"{base}/{stored.sid}.mp3")
        as_wav = await client.get(f"{base}/{stored.sid}.wav")
        bare = await client.get(f"{base}/{stored.sid}")
        no_wav = await client.get(f"{base}/{mp3_only.sid}.wav")
        anonymous = await client.get(f"{base}/{stored.sid}.mp3", auth=None)
    assert mp3.headers["content-type"] == "audio/mpeg"
    assert mp3.headers["content-length"] == str(2 * len(SILENT_MP3_FRAME))
    assert mp3.content == SILENT_MP3_FRAME * 2
    for got in (as_wav, bare):  # no extension: Twilio's default, WAV
        assert got.headers["content-type"] == "audio/x-wav"
        assert (got.headers["content-length"], got.content) == (str(len(wav)), wav)
    assert (no_wav.status_code, anonymous.status_code) == (404, 401)


async def test_closed_adapter_refuses_work(fake: FakeTwilioRest) -> None:
    tel = TwilioTelephony(fake.account_sid, fake.auth_token, FROM, PUBLIC, fake.base_url)
    await tel.dial("call_1", TO)
    await tel.aclose()
    await tel.aclose()
    with pytest.raises(RuntimeError):
        await tel.dial("call_2", TO)


def test_public_base_url_with_a_query_is_refused() -> None:
    with pytest.raises(ValueError):
        TwilioTelephony("AC1", "t", FROM, "https://media.example.test/?x=1")


async def test_http_base_gives_ws_stream_for_loopback_sims(fake: FakeTwilioRest) -> None:
    tel = TwilioTelephony(
        fake.account_sid, fake.auth_token, FROM, "http://127.0.0.1:9/prefix/", fake.base_url
    )
    try:
        await tel.dial("c", TO)
    finally:
        await tel.aclose()
    form = fake.calls[0].form
    assert _stream(form.get("Twiml") or "").get("url") == "ws://127.0.0.1:9/prefix/twilio/stream"
    assert form.get("StatusCallback") == "http://127.0.0.1:9/prefix/twilio/status?call_id=c"


async def test_fake_telephony_scripts_a_failed_dial() -> None:
    fake_tel = FakeTelephony()
    fake_tel.fail_next_dial(retryable=True)
    with pytest.raises(telephony.TelephonyError):
        await fake_tel.dial("c1", TO)
    sid = await fake_tel.dial("c1", TO)
    await fake_tel.hang_up(sid)
    assert [d.call_sid for d in fake_tel.dials] == [sid] and fake_tel.hangups == [sid]
    assert fake_tel.dial_attempts == 2


class _QueueSink:
    def __init__(self) -> None:
        self.events: asyncio.Queue[twilio_webhooks.TelephonyEvent] = asyncio.Queue()

    async def deliver(self, event: twilio_webhooks.TelephonyEvent) -> None:
        await self.events.put(event)


async def test_signed_callbacks_reach_the_sink_end_to_end(fake: FakeTwilioRest) -> None:
    sink = _QueueSink()
    app = Starlette()
    webhooks = LoopbackServer(app)  # the port is bound now, so the public URL is known
    app.router.routes.extend(
        twilio_webhooks.twilio_webhook_routes(fake.auth_token, webhooks.base_url, sink)
    )
    async with webhooks:
        tel = TwilioTelephony(
            fake.account_sid, fake.auth_token, FROM, webhooks.base_url, fake.base_url
        )
        try:
            sid = await tel.dial("call_e2e", TO)
            for status in ("initiated", "ringing", "in-progress"):
                assert (await fake.fire_status(sid, status)).status_code == 204
            assert (await fake.fire_amd(sid, "machine_end_beep")).status_code == 204
            await tel.hang_up(sid)
            done = await fake.fire_status(sid, "completed", CallDuration="42")
            assert done.status_code == 204
            assert (await fake.fire_recording(sid, duration_sec=41)).status_code == 204
            forged = await fake.fire_status(sid, "completed", signing_token="not-the-token")
            assert forged.status_code == 403
        finally:
            await tel.aclose()

    got = [sink.events.get_nowait() for _ in range(sink.events.qsize())]
    assert [(e.kind, e.status) for e in got] == [
        ("status", "dialing"),
        ("status", "ringing"),
        ("status", "in_progress"),
        ("amd", None),
        ("status", "completed"),
        ("recording", None),
    ]
    assert {e.call_sid for e in got} == {sid} and {e.call_id for e in got} == {"call_e2e"}
    assert [e.sequence_number for e in got if e.kind == "status"] == [0, 1, 2, 3]
    assert got[3].answered_by == "machine_end_beep"
    assert got[4].duration_sec == 42
    recording = got[5]
    assert recording.recording_status == "completed" and recording.recording_duration == 41
    assert recording.recording_sid is not None and recording.recording_url is not None
    assert recording.recording_url.endswith(recording.recording_sid)


async def test_the_sdk_request_chatter_stays_quiet_and_the_account_sid_unlogged(
    fake: FakeTwilioRest, caplog: pytest.LogCaptureFixture
) -> None:
    sdk = logging.getLogger("twilio")
    configured = sdk.level
    sdk.setLevel(logging.NOTSET)  # as in a fresh process: only the adapter may quiet it
    caplog.set_level(logging.DEBUG)
    try:
        tel = TwilioTelephony(fake.account_sid, fake.auth_token, FROM, PUBLIC, fake.base_url)
        try:
            sid = await tel.dial("call_quiet", TO)
            await tel.hang_up(sid)
        finally:
            await tel.aclose()
        assert fake.call(sid).status == "completed"
    finally:
        sdk.setLevel(configured)

    assert any(r.name == "telephony.twilio_rest" for r in caplog.records)  # capture works
    chatter = [r for r in caplog.records if r.name.startswith("twilio")]
    assert all(r.levelno >= logging.WARNING for r in chatter), [r.getMessage() for r in chatter]
    for record in caplog.records:
        assert fake.account_sid not in f"{record.getMessage()} {record.__dict__}", record.name
