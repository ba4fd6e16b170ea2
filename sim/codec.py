"""The simulated carrier's own wire: G.711 μ-law and the Twilio Media Streams messages.

The simulated world must not share a line of code with the production bridge: a fake that
uses our codec would mirror any bug in it, and the end-to-end tests would pass on a wrong
wire. So this module is written again from the protocol facts (protocols.md A4) and from
the G.711 reference algorithm (the Sun Microsystems `g711.c` that most implementations
descend from), not from `media.codec`. It is deliberately plain: lookup tables for μ-law
(a 16-bit sample is quantised as its top 14 bits, as `audioop` does), `json` for messages.

The carrier sends what Twilio sends (`connected`, `start`, `media`, `dtmf`, the `mark`
echo, `stop`; sequence numbers, chunks and timestamps as strings) and accepts only what a
bidirectional stream may receive (`media`, `mark`, `clear`, each with a `streamSid`). A
received message of any other shape is refused with `ProtocolError`, so a bridge that
drifts from the documented wire fails the simulated call instead of being tolerated.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any, Final

import numpy as np
import numpy.typing as npt

MULAW_SILENCE: Final = 0xFF  # the code for 0 (positive zero)
_BIAS: Final = 0x84 >> 2  # 33, in 14-bit units
_SATURATED: Final = 0x1FFF  # biased magnitudes above this all take the loudest code


def _decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF  # μ-law stores every bit inverted
    exponent = (codes >> 4) & 0x07
    magnitude = ((((codes & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype("<i2")


def _encode_table() -> npt.NDArray[np.uint8]:
    pcm14 = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 16-bit in, 14-bit significant
    negative = pcm14 < 0
    magnitude = np.minimum(np.abs(pcm14) + _BIAS, _SATURATED)  # 33 .. 8191
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 5  # 0 .. 7
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    code = (exponent << 4) | mantissa
    table = np.where(negative, code ^ 0x7F, code ^ 0xFF).astype(np.uint8)
    # Index by the sample's bit pattern read as unsigned: 0..32767 then -32768..-1.
    return np.roll(table, -32768)


_DECODE: Final = _decode_table()
_ENCODE: Final = _encode_table()


def ulaw_decode(mulaw: bytes) -> bytes:
    """G.711 μ-law bytes to PCM16 little-endian, one sample per byte."""
    pcm: npt.NDArray[np.int16] = _DECODE[np.frombuffer(mulaw, dtype=np.uint8)]
    return pcm.tobytes()


def ulaw_encode(pcm16: bytes) -> bytes:
    """PCM16 little-endian (even length) to G.711 μ-law, one byte per sample."""
    codes: npt.NDArray[np.uint8] = _ENCODE[np.frombuffer(pcm16, dtype="<u2")]
    return codes.tobytes()


# --- the carrier -> the bridge ------------------------------------------------------------


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def connected() -> str:
    """The first message on a new stream socket; it carries no `streamSid`."""
    return '{"event":"connected","protocol":"Call","version":"1.0.0"}'


def start(
    stream_sid: str, call_sid: str, account_sid: str, parameters: dict[str, str], seq: int
) -> str:
    """The one `start`: who the stream belongs to, the `<Parameter>`s, the audio format."""
    return _dumps(
        {
            "event": "start",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "accountSid": account_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": dict(parameters),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def media(stream_sid: str, seq: int, chunk: int, timestamp_ms: int, mulaw: bytes) -> str:
    """20 ms of the callee's voice; `chunk` counts from 1, `timestamp` is ms since start."""
    payload = base64.b64encode(mulaw).decode("ascii")
    return (
        f'{{"event":"media","sequenceNumber":"{seq}","streamSid":{json.dumps(stream_sid)},'
        f'"media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp_ms}",'
        f'"payload":"{payload}"}}}}'
    )


def dtmf(stream_sid: str, seq: int, digit: str) -> str:
    """A key the callee pressed."""
    return _dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(seq),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def mark(stream_sid: str, seq: int, name: str) -> str:
    """The echo of the bridge's mark: everything queued before it has played (or was cleared)."""
    return _dumps(
        {
            "event": "mark",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    )


def stop(stream_sid: str, seq: int, account_sid: str, call_sid: str) -> str:
    """The last message before the carrier closes the socket."""
    return _dumps(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "stop": {"accountSid": account_sid, "callSid": call_sid},
        }
    )


# --- the bridge -> the carrier ------------------------------------------------------------


class ProtocolError(ValueError):
    """A message from the bridge that a Twilio bidirectional stream would not accept."""


@dataclasses.dataclass(frozen=True, slots=True)
class PlayMedia:
    """μ-law audio to queue for playback (already base64-decoded)."""

    stream_sid: str
    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class PlayMark:
    """A mark to echo once the audio queued before it has played."""

    stream_sid: str
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class Clear:
    """Drop unplayed audio and echo every pending mark now."""

    stream_sid: str


Received = PlayMedia | PlayMark | Clear


def parse(raw: str | bytes) -> Received:
    """Read one message from the bridge.

    Raises:
        ProtocolError: not a JSON object, an event other than media/mark/clear, no string
            `streamSid`, a `media` payload that is not base64, or a `mark` without a name.
    """
    if isinstance(raw, bytes):
        raise ProtocolError("binary frame (Media Streams messages are JSON text)")
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError("not JSON") from exc
    if not isinstance(message, dict):
        raise ProtocolError("not a JSON object")
    event = message.get("event")
    stream_sid = message.get("streamSid")
    if event not in ("media", "mark", "clear"):
        raise ProtocolError(f"unknown event {event!s:.20}")
    if not isinstance(stream_sid, str) or not stream_sid:
        raise ProtocolError(f"{event} without streamSid")
    if event == "clear":
        return Clear(stream_sid)
    body = message.get(event)
    if not isinstance(body, dict):
        raise ProtocolError(f"{event} without its {event!r} object")
    if event == "mark":
        name = body.get("name")
        if not isinstance(name, str):
            raise ProtocolError("mark without a name")
        return PlayMark(stream_sid, name)
    payload = body.get("payload")
    if not isinstance(payload, str):
        raise ProtocolError("media without a payload")
    try:
        return PlayMedia(stream_sid, base64.b64decode(payload, validate=True))
    except binascii.Error as exc:
        raise ProtocolError("media payload is not base64") from exc
