"""What real Deepgram accepts on a live `/v1/listen` stream: the handshake's query parameters
and the text messages a client may send once connected.

The simulator checks both so a client that the real API would refuse fails its test here
first. Names and value types follow Deepgram's `/v1/listen` reference as deepgram-sdk encodes it
(the SDK's `Literal` sets for model, encoding and the boolean flags); the languages are the ones
Deepgram lists for nova-3 streaming (including `multi`, code-switching). A refused handshake is
an HTTP error with Deepgram's JSON body (`err_code`, `err_msg`, `request_id`) and its debugging
headers (`dg-request-id` always, `dg-error` on failure). What the simulator sends back must
parse as deepgram-sdk's typed live models with no field the type lacks. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Callable
from typing import Any

import pydantic
from deepgram.listen.v1.types.listen_v1metadata import ListenV1Metadata
from deepgram.listen.v1.types.listen_v1results import ListenV1Results
from deepgram.listen.v1.types.listen_v1speech_started import ListenV1SpeechStarted
from deepgram.listen.v1.types.listen_v1utterance_end import ListenV1UtteranceEnd
from deepgram.types.listen_v1encoding import ListenV1Encoding
from deepgram.types.listen_v1model import ListenV1Model

CONTROL_TYPES = frozenset({"KeepAlive", "Finalize", "CloseStream"})
# nova-3 streaming languages (Deepgram's models & languages overview and changelogs).
NOVA3_LANGUAGES = frozenset(
    {"multi", "en", "en-US", "en-AU", "en-GB", "en-IN", "en-NZ", "es", "es-419", "fr", "fr-CA"}
    | {"de", "de-CH", "it", "pt", "pt-BR", "pt-PT", "nl", "nl-BE", "ja", "ko", "ko-KR", "ru"}
    | {"uk", "pl", "cs", "bg", "fi", "hi", "hu", "vi", "tr", "no", "id", "sv", "da", "el"}
    | {"ro", "sk", "ca", "et", "lv", "lt", "ms", "be", "bn", "bs", "hr", "kn", "mk", "mr"}
    | {"sr", "sl", "ta", "tl", "te", "zh", "zh-CN", "zh-Hans", "zh-TW", "zh-Hant"}
)
REPEATABLE = frozenset({"keyterm", "keywords", "redact", "replace", "search", "tag", "extra"})
_LANGUAGE = re.compile(r"^(multi|[a-z]{2,3}(-[A-Za-z0-9]{2,8})*)$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _literals(alias: object) -> frozenset[str]:
    """The string values of one of the SDK's `Union[Literal[...], Any]` aliases."""
    return frozenset(
        value for arg in typing.get_args(alias) for value in typing.get_args(arg) if value
    )


MODELS = _literals(ListenV1Model)
ENCODINGS = _literals(ListenV1Encoding)


def _bool(value: str) -> bool:
    return value in ("true", "false")


def _positive_int(value: str) -> bool:
    return value.isdigit() and int(value) > 0


def _endpointing(value: str) -> bool:
    return value in ("true", "false") or value.isdigit()


def _text(value: str) -> bool:
    return bool(value)


LIVE_PARAMS: dict[str, Callable[[str], bool]] = {
    "model": lambda v: v in MODELS or bool(_UUID.match(v)),
    "language": lambda v: bool(_LANGUAGE.match(v)),
    "encoding": lambda v: v in ENCODINGS,
    "sample_rate": _positive_int,
    "channels": _positive_int,
    "endpointing": _endpointing,
    "utterance_end_ms": _positive_int,
    "callback_method": lambda v: v in ("POST", "GET", "PUT", "DELETE"),
    "redact": lambda v: v in ("true", "false", "pci", "numbers", "aggressive_numbers", "ssn"),
    **dict.fromkeys(
        (
            "interim_results",
            "punctuate",
            "smart_format",
            "vad_events",
            "diarize",
            "multichannel",
            "numerals",
            "profanity_filter",
            "dictation",
            "detect_entities",
            "mip_opt_out",
        ),
        _bool,
    ),
    **dict.fromkeys(
        (
            "keyterm",
            "keywords",
            "replace",
            "search",
            "tag",
            "extra",
            "callback",
            "version",
            "diarize_model",
            "language_hint",
        ),
        _text,
    ),
}


def query_problems(query: dict[str, list[str]]) -> list[str]:
    """Why Deepgram would refuse these live query parameters (empty: it accepts them)."""
    problems = []
    for name, values in sorted(query.items()):
        check = LIVE_PARAMS.get(name)
        if check is None:
            problems.append(f"unknown query parameter {name!r}")
            continue
        if len(values) > 1 and name not in REPEATABLE:
            problems.append(f"query parameter {name!r} given {len(values)} times")
        problems += [f"invalid value {v!r} for {name!r}" for v in values if not check(v)]
    model = query.get("model", ["base"])[-1]
    language = query.get("language", ["en"])[-1]
    if model.startswith("nova-3") and language not in NOVA3_LANGUAGES:
        problems.append(f"model {model!r} does not support language {language!r}")
    encoding = query.get("encoding")
    if encoding is not None and "sample_rate" not in query:
        problems.append("'encoding' requires 'sample_rate' for raw audio")
    return problems


def control_problem(text: str) -> str | None:
    """Why a text frame is not one of the live control messages (None: it is one)."""
    try:
        message = json.loads(text)
    except ValueError:
        return f"text frame is not JSON: {text[:80]!r}"
    if not isinstance(message, dict) or message.get("type") not in CONTROL_TYPES:
        return f"unknown control message: {text[:80]!r}"
    if set(message) != {"type"}:
        return f"unexpected fields in {message['type']}: {sorted(set(message) - {'type'})}"
    return None


SENT_TYPES: dict[str, type[pydantic.BaseModel]] = {
    "Results": ListenV1Results,
    "Metadata": ListenV1Metadata,
    "SpeechStarted": ListenV1SpeechStarted,
    "UtteranceEnd": ListenV1UtteranceEnd,
}


def sent_problem(message: dict[str, Any]) -> str | None:
    """Why a message the simulator sends is not one Deepgram sends (None: it is one)."""
    model = SENT_TYPES.get(str(message.get("type")))
    if model is None:
        return f"sent an unknown message type {message.get('type')!r}"
    try:
        extras = model_extras(model.model_validate(message))
    except pydantic.ValidationError as exc:
        return f"sent a malformed {message['type']}: {exc.errors()[0]['msg']}"
    return f"sent {message['type']} with fields Deepgram lacks: {extras}" if extras else None


def model_extras(value: object, path: str = "") -> list[str]:
    """Every field a typed model (or any model inside it) kept as an unknown extra."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        found += [f"{path}.{name}" for name in value.model_extra or {}]
        for name in type(value).model_fields:
            found += model_extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found += model_extras(item, f"{path}[{i}]")
    return found


def error_body(status: int, message: str, request_id: str) -> bytes:
    """Deepgram's error JSON for a refused handshake."""
    codes = {400: "Bad Request", 401: "INVALID_AUTH", 429: "TOO_MANY_REQUESTS"}
    code = codes.get(status, "INTERNAL_SERVER_ERROR" if status >= 500 else "Bad Request")
    body = {"err_code": code, "err_msg": message, "request_id": request_id}
    return json.dumps(body).encode()
