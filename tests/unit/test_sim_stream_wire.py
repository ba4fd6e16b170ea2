"""The Media Streams checks (`sim.stream_wire`) against Twilio's own documented examples.

The examples are those of Twilio's "Media Streams - WebSocket Messages" page, with the
`MZXXXX…` placeholders filled in with hex (real SIDs are two letters and 32 hex digits) and
the abbreviated payloads ("no+JhoaJjpz...") made whole 20 ms frames. Each kind of violation
is then shown to be caught: in what the carrier sends and in what the bridge sends back.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import pytest

from sim import codec, stream_wire
from sim.stream_wire import INVALID, MALFORMED, StreamWire

STREAM = "MZ" + "0123456789abcdef" * 2
ACCOUNT = "AC" + "a1" * 16
CALL = "CA" + "c2" * 16
FRAME = base64.b64encode(bytes(range(160))).decode()

CONNECTED: dict[str, Any] = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START: dict[str, Any] = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": ACCOUNT,
        "streamSid": STREAM,
        "callSid": CALL,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
    },
    "streamSid": STREAM,
}
MEDIA: dict[str, Any] = {
    "event": "media",
    "sequenceNumber": "2",
    "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": FRAME},
    "streamSid": STREAM,
}
DTMF: dict[str, Any] = {
    "event": "dtmf",
    "streamSid": STREAM,
    "sequenceNumber": "3",
    "dtmf": {"track": "inbound_track", "digit": "1"},
}
MARK: dict[str, Any] = {
    "event": "mark",
    "sequenceNumber": "4",
    "streamSid": STREAM,
    "mark": {"name": "my label"},
}
STOP: dict[str, Any] = {
    "event": "stop",
    "sequenceNumber": "5",
    "stop": {"accountSid": ACCOUNT, "callSid": CALL},
    "streamSid": STREAM,
}
TO_TWILIO: list[dict[str, Any]] = [
    {"event": "media", "streamSid": STREAM, "media": {"payload": FRAME}},
    {"event": "mark", "streamSid": STREAM, "mark": {"name": "my label"}},
    {"event": "clear", "streamSid": STREAM},
]


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message)


def started() -> StreamWire:
    wire = StreamWire()
    assert wire.carrier_sends(dumps(CONNECTED)) == []
    assert wire.carrier_sends(dumps(START)) == []
    return wire


def reasons(violations: list[stream_wire.Violation]) -> list[str]:
    return [v.reason for v in violations]


def test_the_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(stream_wire.schema())


def test_twilios_documented_examples_pass_in_order() -> None:
    wire = StreamWire()
    for message in (CONNECTED, START, MEDIA, DTMF, MARK, STOP):
        assert wire.carrier_sends(dumps(message)) == [], message["event"]
    assert wire.stream_sid == STREAM and wire.checked == {"carrier": 6, "bridge": 0}


@pytest.mark.parametrize("message", TO_TWILIO, ids=lambda m: m["event"])
def test_the_documented_messages_to_twilio_pass(message: dict[str, Any]) -> None:
    assert started().bridge_sent(dumps(message)) == []


def test_the_sim_codec_speaks_the_documented_wire() -> None:
    wire = StreamWire()
    sent = [
        codec.connected(),
        codec.start(STREAM, CALL, ACCOUNT, {"call_id": "c-1"}, seq=1),
        codec.media(STREAM, 2, 1, 0, bytes(160)),
        codec.media(STREAM, 3, 2, 20, bytes(160)),
        codec.dtmf(STREAM, 4, "#"),
        codec.mark(STREAM, 5, "utt-1"),
        codec.stop(STREAM, 6, ACCOUNT, CALL),
    ]
    assert [wire.carrier_sends(m) for m in sent] == [[]] * len(sent)


def test_a_missing_stream_sid_is_refused_as_31951() -> None:
    (violation,) = started().bridge_sent(dumps({"event": "clear"}))
    assert violation.code == INVALID and violation.ignored and violation.sender == "bridge"
    assert violation.reason == "'streamSid' is a required property"
    wire = StreamWire()
    wire.carrier_sends(dumps(CONNECTED))
    media = {k: v for k, v in MEDIA.items() if k != "streamSid"}
    assert "'streamSid' is a required property" in reasons(wire.carrier_sends(dumps(media)))


def test_a_numeric_sequence_number_is_caught() -> None:
    wire = StreamWire()
    wire.carrier_sends(dumps(CONNECTED))
    found = reasons(wire.carrier_sends(dumps({**START, "sequenceNumber": 1})))
    assert found[0] == "sequenceNumber: 1 is not a string matching ^[1-9][0-9]*$"
    assert found[1] == "sequenceNumber 1, expected '1'"
    media = {**MEDIA, "media": {**MEDIA["media"], "chunk": 1, "timestamp": 5}}
    found = reasons(wire.carrier_sends(dumps(media)))
    assert "media.chunk: 1 is not a string matching ^[1-9][0-9]*$" in found
    assert "media.timestamp: 5 is not a string matching ^(?:0|[1-9][0-9]*)$" in found


def test_gaps_in_sequence_and_chunk_and_time_going_back_are_caught() -> None:
    wire = started()
    later = {**MEDIA, "sequenceNumber": "3"}
    assert reasons(wire.carrier_sends(dumps(later))) == ["sequenceNumber '3', expected '2'"]
    back = {**MEDIA, "sequenceNumber": "4", "media": {**MEDIA["media"], "chunk": "3"}}
    back["media"]["timestamp"] = "0"
    assert reasons(wire.carrier_sends(dumps(back))) == [
        "media.chunk '3', expected '2'",
        "media.timestamp 0 went back from 5",
    ]


@pytest.mark.parametrize("size", [0, 159, 161, 320])
def test_inbound_audio_is_one_160_byte_frame(size: int) -> None:
    payload = base64.b64encode(bytes(size)).decode()
    media = {**MEDIA, "media": {**MEDIA["media"], "payload": payload}}
    (violation,) = started().carrier_sends(dumps(media))
    assert violation.reason == f"media.payload is {size} bytes, not one 20 ms frame (160)"
    assert violation.code is None and violation.sender == "carrier"


def test_outbound_audio_of_any_whole_frames_is_played_and_partial_frames_are_a_house_rule() -> None:
    wire = started()
    for size in (160, 480):
        payload = base64.b64encode(bytes(size)).decode()
        message = {"event": "media", "streamSid": STREAM, "media": {"payload": payload}}
        assert wire.bridge_sent(dumps(message)) == []
    for size in (0, 100, 200):
        payload = base64.b64encode(bytes(size)).decode()
        message = {"event": "media", "streamSid": STREAM, "media": {"payload": payload}}
        (violation,) = wire.bridge_sent(dumps(message))
        # Twilio's docs allow any size: it plays the audio; only our promise is broken.
        assert violation.code is None and not violation.ignored
        assert violation.reason == f"media.payload is {size} bytes, not whole 20 ms frames (160)"


def test_a_payload_that_is_not_base64_is_refused() -> None:
    message = {"event": "media", "streamSid": STREAM, "media": {"payload": "RIFF$\x00WAVE"}}
    (violation,) = started().bridge_sent(dumps(message))
    assert violation.code == INVALID and violation.reason.startswith("media.payload: ")


def test_unknown_fields_are_refused_at_every_level() -> None:
    wire = started()
    extra_top = {**TO_TWILIO[2], "sequenceNumber": "1"}
    assert reasons(wire.bridge_sent(dumps(extra_top))) == ["unknown field 'sequenceNumber'"]
    # Twilio's own inbound media carries track/chunk/timestamp; what we send must not.
    extra_inner: dict[str, Any] = {
        "event": "media",
        "streamSid": STREAM,
        "media": {"payload": FRAME},
    }
    extra_inner["media"]["track"] = "outbound"
    assert reasons(wire.bridge_sent(dumps(extra_inner))) == ["media: unknown field 'track'"]
    carrier = StreamWire()
    carrier.carrier_sends(dumps(CONNECTED))
    start = json.loads(dumps(START))
    start["start"]["mediaFormat"]["bitDepth"] = 8
    # The parameters first, so the shown (clipped) message would include them.
    start["start"] = {"customParameters": start["start"].pop("customParameters")} | start["start"]
    (violation,) = carrier.carrier_sends(dumps(start))
    assert violation.reason == "start.mediaFormat: unknown field 'bitDepth'"
    assert '"customParameters":{...}' in violation.message and "Jane" not in violation.message


@pytest.mark.parametrize("event", ["stop", "dtmf", "start", "connected", "hangup", None])
def test_events_a_stream_does_not_accept_are_refused(event: str | None) -> None:
    (violation,) = started().bridge_sent(dumps({"event": event, "streamSid": STREAM}))
    assert violation.code == INVALID
    assert violation.reason.startswith(f"a stream accepts no {str(event)!r} event")


def test_events_twilio_never_sends_are_caught() -> None:
    (violation,) = started().carrier_sends(dumps({"event": "clear", "streamSid": STREAM}))
    assert violation.reason == "Twilio sends no 'clear' event"


def test_binary_frames_are_31950_and_bad_json_31951() -> None:
    wire = started()
    (binary,) = wire.bridge_sent(bytes(160))
    assert binary.code == MALFORMED and binary.message == "<160 bytes binary>"
    (text,) = wire.bridge_sent("{not json")
    assert text.code == INVALID and text.reason == "not JSON"
    (array,) = wire.bridge_sent("[]")
    assert array.code == INVALID


def test_another_streams_sid_is_refused() -> None:
    other = "MZ" + "f" * 32
    (violation,) = started().bridge_sent(dumps({"event": "clear", "streamSid": other}))
    assert violation.code == INVALID and violation.reason == "streamSid is not the active stream's"


def test_the_carriers_order_is_checked() -> None:
    wire = StreamWire()
    assert reasons(wire.carrier_sends(dumps(MEDIA))) == [
        "media before connected",
        "media before start",
        "sequenceNumber '2', expected '1'",
    ]
    wire = started()
    assert reasons(wire.carrier_sends(dumps(CONNECTED))) == ["a second connected"]
    wire = started()
    stop = {**STOP, "sequenceNumber": "2"}
    assert wire.carrier_sends(dumps(stop)) == []
    after = {**MEDIA, "sequenceNumber": "3"}
    assert reasons(wire.carrier_sends(dumps(after))) == ["media after stop"]


def test_the_start_must_describe_mulaw_8k_mono_and_one_stream() -> None:
    wire = StreamWire()
    wire.carrier_sends(dumps(CONNECTED))
    start = json.loads(dumps(START))
    start["start"]["mediaFormat"]["sampleRate"] = 16000
    start["start"]["streamSid"] = "MZ" + "e" * 32
    start["start"]["customParameters"]["n"] = 1
    assert reasons(wire.carrier_sends(dumps(start))) == [
        "start.customParameters.n: 1 is not valid (type)",
        "start.mediaFormat.sampleRate: 16000 is not 8000",
        "start.streamSid differs from streamSid",
    ]


def test_media_on_a_track_the_start_did_not_announce_is_caught() -> None:
    media = {**MEDIA, "media": {**MEDIA["media"], "track": "outbound"}}
    found = reasons(started().carrier_sends(dumps(media)))
    assert found == ["media.track 'outbound' is not in start.tracks"]
