"""Twilio Media Streams wire format <-> typed values, with no I/O (protocols.md A4).

Both directions live here so the bridge and `sim/`'s fake carrier share one definition of the
wire: the bridge parses Twilio's events with `parse()` and answers with `media()`, `mark()`
and `clear()`; the fake carrier builds Twilio's events with `connected()`, `start()`,
`inbound_media()`, `dtmf()`, `mark_echo()`, `stop()` and reads the bridge's answers with
`parse_outbound()`.

Twilio sends `sequenceNumber`, `chunk` and `timestamp` as JSON strings; the parsers accept a
string or a number, the Twilio-side encoders always write strings. The per-frame paths
(`parse` of `media`, `media()`, `inbound_media()`) run 50 times a second per call each way,
so they use orjson, `binascii` and string templates (parse ~3 µs, encode ~0.6 µs; see
`tests/bench/bench_codec.py`); the rare messages go through `orjson.dumps`.
"""

from __future__ import annotations

import binascii
import dataclasses
import functools
from typing import Any, TypeAlias

import orjson

DEFAULT_MEDIA_FORMAT_ENCODING = "audio/x-mulaw"


class CodecError(ValueError):
    """A Media Streams message that is not valid JSON or lacks a field its event requires."""


@dataclasses.dataclass(slots=True, frozen=True)
class MediaFormat:
    """The stream's audio format; Twilio's bidirectional streams are μ-law 8 kHz mono."""

    encoding: str = DEFAULT_MEDIA_FORMAT_ENCODING
    sample_rate: int = 8000
    channels: int = 1


@dataclasses.dataclass(slots=True, frozen=True)
class Connected:
    """First message on the socket; carries no stream id yet."""

    protocol: str = "Call"
    version: str = "1.0.0"


@dataclasses.dataclass(slots=True, frozen=True)
class Start:
    """Stream metadata, sent once; `custom_parameters` are the TwiML `<Parameter>`s."""

    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str]
    media_format: MediaFormat
    tracks: tuple[str, ...] = ("inbound",)


@dataclasses.dataclass(slots=True, frozen=True)
class Media:
    """20 ms of caller audio; `payload` is already base64-decoded μ-law."""

    payload: bytes
    chunk: int
    timestamp_ms: int
    track: str = "inbound"


@dataclasses.dataclass(slots=True, frozen=True)
class Dtmf:
    """A key the caller pressed."""

    digit: str


@dataclasses.dataclass(slots=True, frozen=True)
class Mark:
    """Echo of a mark we sent: everything queued before it has played (or was cleared)."""

    name: str


@dataclasses.dataclass(slots=True, frozen=True)
class Stop:
    """The stream ended; Twilio closes the socket next."""

    call_sid: str = ""
    account_sid: str = ""


@dataclasses.dataclass(slots=True, frozen=True)
class Unknown:
    """An event this codec does not model; callers log and ignore it."""

    event: str


Event: TypeAlias = Connected | Start | Media | Dtmf | Mark | Stop | Unknown


@dataclasses.dataclass(slots=True, frozen=True)
class OutboundMedia:
    """Audio the bridge queued for playback (μ-law 8 kHz, decoded)."""

    stream_sid: str
    payload: bytes


@dataclasses.dataclass(slots=True, frozen=True)
class OutboundMark:
    """A mark the bridge queued behind its audio."""

    stream_sid: str
    name: str


@dataclasses.dataclass(slots=True, frozen=True)
class OutboundClear:
    """The bridge asked to drop all unplayed audio (barge-in)."""

    stream_sid: str


OutboundEvent: TypeAlias = OutboundMedia | OutboundMark | OutboundClear | Unknown


def _load(text: str | bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CodecError("media stream message is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise CodecError("media stream message is not a JSON object")
    return obj


def _b64decode(payload: Any) -> bytes:
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise CodecError("media payload is not valid base64") from exc


def parse(text: str | bytes) -> Event:
    """Decode one Twilio -> bridge message.

    Raises:
        CodecError: invalid JSON, or a known event missing a required field.
    """
    obj = _load(text)
    event = obj.get("event")
    try:
        if event == "media":
            m = obj["media"]
            return Media(
                _b64decode(m["payload"]),
                int(m["chunk"]),
                int(m["timestamp"]),
                m.get("track", "inbound"),
            )
        if event == "mark":
            return Mark(str(obj["mark"]["name"]))
        if event == "dtmf":
            return Dtmf(str(obj["dtmf"]["digit"]))
        if event == "start":
            s = obj["start"]
            fmt = s.get("mediaFormat") or {}
            return Start(
                stream_sid=str(s.get("streamSid") or obj["streamSid"]),
                call_sid=str(s["callSid"]),
                account_sid=str(s["accountSid"]),
                custom_parameters={
                    str(k): str(v) for k, v in (s.get("customParameters") or {}).items()
                },
                media_format=MediaFormat(
                    str(fmt.get("encoding", DEFAULT_MEDIA_FORMAT_ENCODING)),
                    int(fmt.get("sampleRate", 8000)),
                    int(fmt.get("channels", 1)),
                ),
                tracks=tuple(str(t) for t in s.get("tracks", ("inbound",))),
            )
        if event == "stop":
            s = obj.get("stop") or {}
            return Stop(str(s.get("callSid", "")), str(s.get("accountSid", "")))
        if event == "connected":
            return Connected(str(obj.get("protocol", "Call")), str(obj.get("version", "1.0.0")))
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CodecError(f"malformed {event!s:.20} message") from exc
    if not isinstance(event, str):
        raise CodecError("media stream message has no event")
    return Unknown(event)


def parse_outbound(text: str | bytes) -> OutboundEvent:
    """Decode one bridge -> Twilio message (the fake carrier's side).

    Raises:
        CodecError: invalid JSON, or a known event missing a required field.
    """
    obj = _load(text)
    event = obj.get("event")
    try:
        if event == "media":
            return OutboundMedia(str(obj["streamSid"]), _b64decode(obj["media"]["payload"]))
        if event == "mark":
            return OutboundMark(str(obj["streamSid"]), str(obj["mark"]["name"]))
        if event == "clear":
            return OutboundClear(str(obj["streamSid"]))
    except CodecError:
        raise
    except (KeyError, TypeError, AttributeError) as exc:
        raise CodecError(f"malformed outbound {event!s:.20} message") from exc
    if not isinstance(event, str):
        raise CodecError("media stream message has no event")
    return Unknown(event)


@functools.lru_cache(maxsize=4096)
def _quoted(value: str) -> str:
    # A stream SID is plain ASCII in practice; escaping once per SID keeps the template safe.
    return orjson.dumps(value).decode()


def _b64encode(payload: bytes) -> str:
    return binascii.b2a_base64(payload, newline=False).decode("ascii")


# --- bridge -> Twilio ---------------------------------------------------------------------


def media(stream_sid: str, mulaw: bytes) -> str:
    """A `media` message queueing μ-law 8 kHz audio for playback (send whole 160-byte frames)."""
    return (
        f'{{"event":"media","streamSid":{_quoted(stream_sid)},'
        f'"media":{{"payload":"{_b64encode(mulaw)}"}}}}'
    )


def mark(stream_sid: str, name: str) -> str:
    """A `mark` Twilio echoes back once all audio queued before it has played."""
    return orjson.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}).decode()


def clear(stream_sid: str) -> str:
    """A `clear`: Twilio drops unplayed audio and echoes every pending mark."""
    return f'{{"event":"clear","streamSid":{_quoted(stream_sid)}}}'


# --- Twilio -> bridge (for the fake carrier) ----------------------------------------------


def connected() -> str:
    """The first message Twilio sends on a new Media Streams socket."""
    return '{"event":"connected","protocol":"Call","version":"1.0.0"}'


def start(
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    custom_parameters: dict[str, str] | None = None,
    seq: int = 1,
    media_format: MediaFormat | None = None,
    tracks: tuple[str, ...] = ("inbound",),
) -> str:
    """The `start` message, with `sequenceNumber` as a string like Twilio's."""
    fmt = media_format or MediaFormat()
    return orjson.dumps(
        {
            "event": "start",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "accountSid": account_sid,
                "callSid": call_sid,
                "tracks": list(tracks),
                "customParameters": dict(custom_parameters or {}),
                "mediaFormat": {
                    "encoding": fmt.encoding,
                    "sampleRate": fmt.sample_rate,
                    "channels": fmt.channels,
                },
            },
        }
    ).decode()


def inbound_media(stream_sid: str, seq: int, chunk: int, timestamp_ms: int, payload: bytes) -> str:
    """A caller-audio `media` message; sequence, chunk and timestamp are strings."""
    return (
        f'{{"event":"media","sequenceNumber":"{seq}","streamSid":{_quoted(stream_sid)},'
        f'"media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp_ms}",'
        f'"payload":"{_b64encode(payload)}"}}}}'
    )


def dtmf(stream_sid: str, seq: int, digit: str) -> str:
    """A `dtmf` message for one key press on the inbound track."""
    return orjson.dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(seq),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    ).decode()


def mark_echo(stream_sid: str, seq: int, name: str) -> str:
    """Twilio's echo of a bridge mark, sent when playback passes it or on `clear`."""
    return orjson.dumps(
        {
            "event": "mark",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    ).decode()


def stop(stream_sid: str, seq: int, account_sid: str, call_sid: str) -> str:
    """The `stop` message Twilio sends before closing the socket."""
    return orjson.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "stop": {"accountSid": account_sid, "callSid": call_sid},
        }
    ).decode()
