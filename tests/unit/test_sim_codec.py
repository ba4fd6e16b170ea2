"""The simulated carrier's own codec against G.711 and the documented Media Streams shapes.

Checked on known values only, never against `media.codec`: the sim exists to catch bugs in
our codec, so agreeing with it proves nothing. That the two interoperate is shown by the
integration tests, where the real bridge reads what the sim sends.
"""

from __future__ import annotations

import base64
import itertools
import json

import numpy as np
import pytest

from sim import codec


def pcm(*samples: int) -> bytes:
    return np.array(samples, dtype="<i2").tobytes()


def samples(data: bytes) -> list[int]:
    return [int(x) for x in np.frombuffer(data, dtype="<i2")]


def test_mulaw_known_values() -> None:
    # G.711 μ-law: every bit is stored inverted, so 0 is 0xFF; 0x7F is "negative zero".
    assert codec.ulaw_encode(pcm(0)) == b"\xff"
    assert codec.ulaw_encode(pcm(32767, -32768)) == b"\x80\x00"  # loudest codes, saturated
    assert samples(codec.ulaw_decode(b"\xff\x7f\xfe\x7e\x80\x00")) == [0, 0, 8, -8, 32124, -32124]
    # The first code of each of the 8 segments decodes to 132 * (2**segment - 1).
    firsts = bytes(0xFF ^ (segment << 4) for segment in range(8))
    assert samples(codec.ulaw_decode(firsts)) == [132 * (2**s - 1) for s in range(8)]


def test_mulaw_decode_is_symmetric_and_monotonic() -> None:
    positive = samples(codec.ulaw_decode(bytes(range(0xFF, 0x7F, -1))))  # 0xFF .. 0x80
    negative = samples(codec.ulaw_decode(bytes(range(0x7F, -1, -1))))  # 0x7F .. 0x00
    assert negative == [-x for x in positive]
    assert positive == sorted(positive) and len(set(positive)) == 128
    # Within segment s the step is 8 << s (16-bit units).
    assert {b - a for a, b in itertools.pairwise(positive[:16])} == {8}
    assert {b - a for a, b in itertools.pairwise(positive[112:])} == {8 << 7}


def test_mulaw_decision_values() -> None:
    # G.711 quantises 14-bit samples; a 16-bit sample x is taken as floor(x / 4). In segment
    # 0 the decision values lie halfway between the levels 0, 8, 16 ...: 0..3 -> 0, 4..11 -> 8.
    assert codec.ulaw_encode(pcm(3, 4, 11, 12)) == bytes([0xFF, 0xFE, 0xFE, 0xFD])
    # floor() moves the negative side one 14-bit step: -1..-8 -> -8, -9 -> -16.
    assert codec.ulaw_encode(pcm(-1, -8, -9)) == bytes([0x7E, 0x7E, 0x7D])


def test_mulaw_every_level_re_encodes_to_its_code() -> None:
    codes = bytes(c for c in range(256) if c != 0x7F)  # negative zero decodes to 0 -> 0xFF
    assert codec.ulaw_encode(codec.ulaw_decode(codes)) == codes


def test_carrier_messages_have_twilios_shapes() -> None:
    assert json.loads(codec.connected()) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }
    start = json.loads(codec.start("MZ1", "CA1", "AC1", {"session_id": "abc"}, seq=1))
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ1",
        "start": {
            "streamSid": "MZ1",
            "accountSid": "AC1",
            "callSid": "CA1",
            "tracks": ["inbound"],
            "customParameters": {"session_id": "abc"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    media = json.loads(codec.media("MZ1", 4, 2, 20, b"\xff" * 160))
    assert media == {
        "event": "media",
        "sequenceNumber": "4",
        "streamSid": "MZ1",
        "media": {
            "track": "inbound",
            "chunk": "2",
            "timestamp": "20",
            "payload": base64.b64encode(b"\xff" * 160).decode(),
        },
    }
    assert json.loads(codec.dtmf("MZ1", 5, "1")) == {
        "event": "dtmf",
        "streamSid": "MZ1",
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": "1"},
    }
    assert json.loads(codec.mark("MZ1", 6, "utt-7")) == {
        "event": "mark",
        "sequenceNumber": "6",
        "streamSid": "MZ1",
        "mark": {"name": "utt-7"},
    }
    assert json.loads(codec.stop("MZ1", 7, "AC1", "CA1")) == {
        "event": "stop",
        "sequenceNumber": "7",
        "streamSid": "MZ1",
        "stop": {"accountSid": "AC1", "callSid": "CA1"},
    }


def test_parse_reads_what_a_bidirectional_stream_accepts() -> None:
    payload = base64.b64encode(b"\x01\x02\xff").decode()
    media = {"event": "media", "streamSid": "MZ1", "media": {"payload": payload}}
    assert codec.parse(json.dumps(media)) == codec.PlayMedia("MZ1", b"\x01\x02\xff")
    mark = {"event": "mark", "streamSid": "MZ1", "mark": {"name": "utt-7"}}
    assert codec.parse(json.dumps(mark)) == codec.PlayMark("MZ1", "utt-7")
    assert codec.parse('{"event":"clear","streamSid":"MZ1"}') == codec.Clear("MZ1")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"event":"clear","streamSid":"MZ1"}', "binary frame"),
        ("not json", "not JSON"),
        ('["clear"]', "not a JSON object"),
        ('{"event":"start","streamSid":"MZ1"}', "unknown event start"),
        ('{"streamSid":"MZ1"}', "unknown event None"),
        ('{"event":"media","media":{"payload":"//8="}}', "media without streamSid"),
        ('{"event":"clear","streamSid":7}', "clear without streamSid"),
        ('{"event":"media","streamSid":"MZ1"}', "media without its 'media' object"),
        ('{"event":"media","streamSid":"MZ1","media":{}}', "media without a payload"),
        ('{"event":"media","streamSid":"MZ1","media":{"payload":"??"}}', "not base64"),
        ('{"event":"mark","streamSid":"MZ1","mark":{}}', "mark without a name"),
    ],
)
def test_parse_refuses_what_twilio_would_not_accept(raw: str | bytes, reason: str) -> None:
    with pytest.raises(codec.ProtocolError, match=reason):
        codec.parse(raw)
