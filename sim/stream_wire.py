"""Every Media Streams message checked against Twilio's documented shapes, in both directions.

A carrier written by the same team as the bridge would share its misreadings of the wire, so
the sim carrier checks each message against shapes written straight from Twilio's "Media
Streams - WebSocket Messages" page: `sim/media_streams.schema.json` (JSON Schema 2020-12,
one definition per event, no unknown keys at any level). What a schema cannot say is checked
here, per stream: `connected` then `start` first, `sequenceNumber` counting from 1 with no
gap, `media.chunk` likewise, timestamps never going back, the one `streamSid`, nothing after
`stop`, and inbound audio in 160-byte (20 ms) μ-law frames.

A bad message from the bridge is what Twilio's debugger reports as 31950 (not a text frame)
or 31951 (not valid JSON, an event a stream does not accept, missing or unexpected fields, or
another stream's SID); the real carrier then ignores it, and so does the sim. Outbound audio
that is not whole 20 ms frames is a house rule, not Twilio's (its docs allow any size): the
message is played, but the violation is recorded, since media promises whole frames
(protocols.md A4).
"""

from __future__ import annotations

import binascii
import dataclasses
import functools
import importlib.resources
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import jsonschema
import jsonschema.exceptions
import jsonschema_rs

FRAME_BYTES: Final = 160  # 20 ms of μ-law at 8 kHz
MALFORMED: Final = 31950  # Twilio: "Stream - Protocol - Malformed Message"
INVALID: Final = 31951  # Twilio: "Stream - Protocol - Invalid Message"
_SHOWN_CHARS = 160
FROM_TWILIO: Final = ("connected", "start", "media", "dtmf", "mark", "stop")
TO_TWILIO: Final = ("media", "mark", "clear")
_PARAMETERS = re.compile(r'"customParameters"\s*:\s*\{[^{}]*\}')


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    """One message off the documented wire: who sent it, why it is wrong, what it was.

    `code` is the Twilio debugger warning the real carrier would log (it then ignores the
    message); None for a message the sim carrier itself got wrong, or for a house rule."""

    sender: str  # "carrier" | "bridge"
    reason: str
    message: str  # clipped
    code: int | None = None

    @property
    def ignored(self) -> bool:
        """Twilio drops the message instead of acting on it."""
        return self.code is not None

    def __str__(self) -> str:
        code = f" ({self.code})" if self.code is not None else ""
        return f"{self.sender}{code}: {self.reason}: {self.message}"


@functools.cache
def schema() -> dict[str, Any]:
    """The Media Streams schema that ships with the sim."""
    text = (importlib.resources.files("sim") / "media_streams.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _only(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}", "$defs": schema()["$defs"]}


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(_only(name))


@functools.cache
def _fast(name: str) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(_only(name))


def shape_errors(definition: str, message: Any) -> list[str]:
    """Why `message` does not have the shape `definition` (e.g. "twilio.start") documents.

    Fifty frames a second each way per call: jsonschema-rs answers "valid?" in microseconds
    (the pure-Python validator takes ~100 µs a frame); the Python one words the reasons."""
    if _fast(definition).is_valid(message):
        return []
    return [_reason(e) for e in _validator(definition).iter_errors(message)] or [
        f"not a valid {definition} message"
    ]


def _schema_of(error: jsonschema.exceptions.ValidationError) -> Mapping[str, Any]:
    return error.schema if isinstance(error.schema, Mapping) else {}


def _reason(error: jsonschema.exceptions.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = set(_schema_of(error).get("properties", {}))
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        extra = sorted(set(instance) - allowed)
        text = f"unknown field {', '.join(map(repr, extra))}"
    elif error.validator == "required":
        text = error.message
    else:
        shown = json.dumps(error.instance)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        text = f"{shown} is not {_wanted(error)}"
    return f"{path}: {text}" if path else text


def _wanted(error: jsonschema.exceptions.ValidationError) -> str:
    schema_ = _schema_of(error)
    if "const" in schema_:
        return repr(schema_["const"])
    if "enum" in schema_:
        return "one of " + ", ".join(map(repr, schema_["enum"]))
    if "pattern" in schema_:
        return f"a string matching {schema_['pattern']}"
    return f"valid ({error.validator})"


def _clip(raw: str | bytes) -> str:
    text = raw if isinstance(raw, str) else f"<{len(raw)} bytes binary>"
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _count(value: Any, otherwise: int) -> int:
    """A counter's value, so one gap is reported once and the count goes on from there."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return otherwise


def _payload_bytes(payload: str) -> int:
    return len(binascii.a2b_base64(payload, strict_mode=True))


class StreamWire:
    """The checks for one Media Stream, fed every message in the order it crossed the wire:
    `carrier_sends()` before the carrier sends one, `bridge_sent()` for each one received."""

    def __init__(self) -> None:
        self.stream_sid: str | None = None
        self.checked = {"carrier": 0, "bridge": 0}  # messages seen, by sender
        self._tracks: tuple[str, ...] = ()
        self._seen_connected = False
        self._stopped = False
        self._seq = 0
        self._chunk = 0
        self._timestamp = -1

    # ---- the carrier -> the bridge --------------------------------------------------------

    def carrier_sends(self, raw: str) -> list[Violation]:
        """What is wrong with a message the carrier is about to send (empty when nothing)."""
        self.checked["carrier"] += 1
        reasons = self._twilio_reasons(raw)
        # The <Parameter>s carry core's stream token: never into a log line.
        shown = _clip(_PARAMETERS.sub('"customParameters":{...}', raw)) if reasons else ""
        return [Violation("carrier", r, shown) for r in reasons]

    def _twilio_reasons(self, raw: str) -> list[str]:
        try:
            message = json.loads(raw)
        except ValueError:
            return ["not JSON"]
        event = message.get("event") if isinstance(message, dict) else None
        if event not in FROM_TWILIO:
            return [f"Twilio sends no {str(event)[:20]!r} event"]
        assert isinstance(message, dict)
        reasons = shape_errors(f"twilio.{event}", message)
        shaped = not reasons
        if self._stopped:
            reasons.append(f"{event} after stop")
        if event == "connected":
            if self._seen_connected:
                reasons.append("a second connected")
            self._seen_connected = True
            return reasons
        if not self._seen_connected:
            reasons.append(f"{event} before connected")
        if event == "start":
            reasons += self._started(message)
        elif self.stream_sid is None:
            reasons.append(f"{event} before start")
        elif message.get("streamSid") != self.stream_sid:
            reasons.append("streamSid is not the stream's")
        reasons += self._sequence(message)
        if event == "media" and shaped:
            reasons += self._media(message["media"])
        if event == "stop":
            self._stopped = True
        return reasons

    def _started(self, message: dict[str, Any]) -> list[str]:
        if self.stream_sid is not None:
            return ["a second start"]
        start = message.get("start")
        if not isinstance(start, dict):
            return []
        self.stream_sid = message.get("streamSid")
        self._tracks = tuple(start.get("tracks") or ())
        if start.get("streamSid") != self.stream_sid:
            return ["start.streamSid differs from streamSid"]
        return []

    def _sequence(self, message: dict[str, Any]) -> list[str]:
        seq = message.get("sequenceNumber")
        expected, self._seq = self._seq + 1, _count(seq, self._seq + 1)
        if seq != str(expected):
            return [f"sequenceNumber {seq!r}, expected {str(expected)!r}"]
        return []

    def _media(self, media: dict[str, Any]) -> list[str]:
        reasons = []
        expected, self._chunk = self._chunk + 1, int(media["chunk"])
        if media["chunk"] != str(expected):
            reasons.append(f"media.chunk {media['chunk']!r}, expected {str(expected)!r}")
        timestamp = int(media["timestamp"])
        if timestamp < self._timestamp:
            reasons.append(f"media.timestamp {timestamp} went back from {self._timestamp}")
        self._timestamp = timestamp
        if self._tracks and media["track"] not in self._tracks:
            reasons.append(f"media.track {media['track']!r} is not in start.tracks")
        size = _payload_bytes(media["payload"])
        if size != FRAME_BYTES:
            reasons.append(f"media.payload is {size} bytes, not one 20 ms frame ({FRAME_BYTES})")
        return reasons

    # ---- the bridge -> the carrier --------------------------------------------------------

    def bridge_sent(self, raw: str | bytes) -> list[Violation]:
        """What is wrong with a message the bridge sent (empty when nothing). A violation
        with a `code` is one Twilio would ignore; the caller must not act on the message."""
        self.checked["bridge"] += 1
        if isinstance(raw, bytes):
            reason = "binary frame (Media Streams messages are JSON text)"
            return [Violation("bridge", reason, _clip(raw), MALFORMED)]
        try:
            message = json.loads(raw)
        except ValueError:
            return [Violation("bridge", "not JSON", _clip(raw), INVALID)]
        event = message.get("event") if isinstance(message, dict) else None
        if event not in TO_TWILIO:
            reason = f"a stream accepts no {str(event)[:20]!r} event (only media, mark, clear)"
            return [Violation("bridge", reason, _clip(raw), INVALID)]
        assert isinstance(message, dict)
        reasons = shape_errors(f"bridge.{event}", message)
        if not reasons and message["streamSid"] != self.stream_sid:
            reasons.append("streamSid is not the active stream's")
        if reasons:
            return [Violation("bridge", r, _clip(raw), INVALID) for r in reasons]
        if event == "media":
            size = _payload_bytes(message["media"]["payload"])
            if size == 0 or size % FRAME_BYTES:
                reason = f"media.payload is {size} bytes, not whole 20 ms frames ({FRAME_BYTES})"
                return [Violation("bridge", reason, _clip(raw))]
        return []
