"""The Twilio codec: documented messages in, ready-to-send messages out, both sides."""

from __future__ import annotations

import base64
import dataclasses

import orjson
import pytest

from media.codec import twilio_codec as tc

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA0123456789abcdef0123456789abcdef"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
AUDIO = bytes(range(160))
AUDIO_B64 = base64.b64encode(AUDIO).decode()

# Shapes copied from Twilio's websocket-messages doc (protocols.md A4), numbers as strings.
TWILIO_CONNECTED = '{"event":"connected","protocol":"Call","version":"1.0.0"}'
TWILIO_START = (
    '{"event":"start","sequenceNumber":"1","streamSid":"'
    + SID
    + '","start":{"streamSid":"'
    + SID
    + '","accountSid":"'
    + ACCOUNT
    + '","callSid":"'
    + CALL
    + '","tracks":["inbound"],'
    '"customParameters":{"session_id":"abc"},'
    '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}'
)
TWILIO_MEDIA = (
    '{"event":"media","sequenceNumber":"4","streamSid":"' + SID + '","media":{"track":"inbound",'
    '"chunk":"2","timestamp":"5","payload":"' + AUDIO_B64 + '"}}'
)
TWILIO_DTMF = (
    '{"event":"dtmf","streamSid":"' + SID + '","sequenceNumber":"5",'
    '"dtmf":{"track":"inbound_track","digit":"1"}}'
)
TWILIO_MARK = (
    '{"event":"mark","sequenceNumber":"4","streamSid":"' + SID + '","mark":{"name":"my label"}}'
)
TWILIO_STOP = (
    '{"event":"stop","sequenceNumber":"5","streamSid":"' + SID + '",'
    '"stop":{"accountSid":"' + ACCOUNT + '","callSid":"' + CALL + '"}}'
)


def test_parses_every_documented_twilio_event() -> None:
    assert tc.parse(TWILIO_CONNECTED) == tc.Connected("Call", "1.0.0")
    assert tc.parse(TWILIO_START) == tc.Start(
        stream_sid=SID,
        call_sid=CALL,
        account_sid=ACCOUNT,
        custom_parameters={"session_id": "abc"},
        media_format=tc.MediaFormat("audio/x-mulaw", 8000, 1),
        tracks=("inbound",),
    )
    assert tc.parse(TWILIO_MEDIA) == tc.Media(AUDIO, chunk=2, timestamp_ms=5, track="inbound")
    assert tc.parse(TWILIO_DTMF) == tc.Dtmf("1")
    assert tc.parse(TWILIO_MARK) == tc.Mark("my label")
    assert tc.parse(TWILIO_STOP) == tc.Stop(call_sid=CALL, account_sid=ACCOUNT)


def test_parse_accepts_bytes_and_numbers_sent_as_json_numbers() -> None:
    text = TWILIO_MEDIA.replace('"chunk":"2"', '"chunk":2').replace(
        '"timestamp":"5"', '"timestamp":5'
    )
    event = tc.parse(text.encode())
    assert isinstance(event, tc.Media)
    assert (event.chunk, event.timestamp_ms) == (2, 5)


def test_events_are_immutable() -> None:
    event = tc.parse(TWILIO_MEDIA)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.chunk = 3  # type: ignore[misc,union-attr]


def test_unknown_events_are_values_not_errors() -> None:
    assert tc.parse('{"event":"transcription","streamSid":"MZ1"}') == tc.Unknown("transcription")
    assert tc.parse_outbound('{"event":"play","streamSid":"MZ1"}') == tc.Unknown("play")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{not json",
        "[1, 2]",
        '"media"',
        '{"streamSid":"MZ1"}',
        '{"event":7}',
        '{"event":"media","media":{"chunk":"1","timestamp":"0"}}',
        '{"event":"media","media":{"chunk":"1","timestamp":"0","payload":"@@@@"}}',
        '{"event":"media","media":{"chunk":"1","timestamp":"0","payload":"AAA"}}',
        '{"event":"media","media":{"chunk":"one","timestamp":"0","payload":"AAAA"}}',
        '{"event":"media","media":"AAAA"}',
        '{"event":"start","start":{"streamSid":"MZ1","accountSid":"AC1"}}',
        '{"event":"mark","mark":{}}',
        '{"event":"dtmf"}',
    ],
)
def test_malformed_messages_raise_codec_error(text: str) -> None:
    with pytest.raises(tc.CodecError):
        tc.parse(text)


@pytest.mark.parametrize(
    "text",
    ["nope", '{"event":"media","streamSid":"MZ1"}', '{"event":"mark","streamSid":"MZ1"}', "{}"],
)
def test_malformed_outbound_messages_raise_codec_error(text: str) -> None:
    with pytest.raises(tc.CodecError):
        tc.parse_outbound(text)


def test_bridge_encoders_produce_twilios_exact_shapes() -> None:
    assert orjson.loads(tc.media(SID, AUDIO)) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": AUDIO_B64},
    }
    assert orjson.loads(tc.mark(SID, "utt-7")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "utt-7"},
    }
    assert orjson.loads(tc.clear(SID)) == {"event": "clear", "streamSid": SID}


def test_bridge_messages_round_trip_through_the_carrier_parser() -> None:
    assert tc.parse_outbound(tc.media(SID, AUDIO)) == tc.OutboundMedia(SID, AUDIO)
    assert tc.parse_outbound(tc.mark(SID, 'say "bye"')) == tc.OutboundMark(SID, 'say "bye"')
    assert tc.parse_outbound(tc.clear(SID)) == tc.OutboundClear(SID)


def test_templated_encoders_escape_an_unusual_stream_sid() -> None:
    odd = 'MZ"\\\n'
    assert orjson.loads(tc.media(odd, b"\xff"))["streamSid"] == odd
    assert orjson.loads(tc.clear(odd))["streamSid"] == odd
    assert orjson.loads(tc.inbound_media(odd, 1, 1, 0, b"\xff"))["streamSid"] == odd


def test_carrier_encoders_send_numbers_as_strings_like_twilio() -> None:
    media = orjson.loads(tc.inbound_media(SID, 4, 2, 5, AUDIO))
    assert media == orjson.loads(TWILIO_MEDIA)
    assert orjson.loads(tc.connected()) == orjson.loads(TWILIO_CONNECTED)
    assert orjson.loads(tc.start(SID, CALL, ACCOUNT, {"session_id": "abc"})) == orjson.loads(
        TWILIO_START
    )
    assert orjson.loads(tc.dtmf(SID, 5, "1")) == orjson.loads(TWILIO_DTMF)
    assert orjson.loads(tc.mark_echo(SID, 4, "my label")) == orjson.loads(TWILIO_MARK)
    assert orjson.loads(tc.stop(SID, 5, ACCOUNT, CALL)) == orjson.loads(TWILIO_STOP)


def test_carrier_messages_round_trip_through_the_bridge_parser() -> None:
    fmt = tc.MediaFormat("audio/x-mulaw", 8000, 1)
    assert tc.parse(tc.start(SID, CALL, ACCOUNT, {"a": "1"}, seq=1, media_format=fmt)) == tc.Start(
        SID, CALL, ACCOUNT, {"a": "1"}, fmt
    )
    assert tc.parse(tc.inbound_media(SID, 9, 8, 140, b"")) == tc.Media(b"", 8, 140)
    assert tc.parse(tc.dtmf(SID, 3, "#")) == tc.Dtmf("#")
    assert tc.parse(tc.mark_echo(SID, 3, "utt-1")) == tc.Mark("utt-1")
    assert tc.parse(tc.stop(SID, 3, ACCOUNT, CALL)) == tc.Stop(CALL, ACCOUNT)
    assert tc.parse(tc.connected()) == tc.Connected()
