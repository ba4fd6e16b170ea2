"""The published Gemini Live schema (v1beta), as the real server applies it to every frame.

Google parses each client frame into `BidiGenerateContentClientMessage` and closes the socket
with 1007 and a reason when a field is unknown or mistyped; a stand-in that accepted more
would let the production adapter drift from what Google takes. The same types check what the
stand-in sends (`server_frame_errors`), so the sim cannot invent fields the bridge then comes
to rely on (issue 13: `transcription.finished`, `setupComplete.sessionId`). The types come
from `google-ai-generativelanguage`, a package nobody on the project wrote.
"""

from __future__ import annotations

import re

from google.ai.generativelanguage_v1beta import types as v1beta
from google.protobuf import json_format

API_VERSION = "v1beta"
INVALID_ARGUMENT = 1007  # the close code Google uses for a frame it cannot parse
_INVALID = "Invalid JSON payload received."
_UNKNOWN = re.compile(r'has no field named "([^"]+)" at "(?:\w+\.)?([^"]*)"')


class SchemaError(ValueError):
    """The frame does not match the v1beta schema; `str()` is the close reason to send."""


def parse_client_frame(raw: str | bytes) -> v1beta.BidiGenerateContentClientMessage:
    """One client frame, strictly (unknown fields rejected; both key casings accepted).

    Raises:
        SchemaError: the frame is not a valid `BidiGenerateContentClientMessage`.
    """
    message = v1beta.BidiGenerateContentClientMessage()
    pb = v1beta.BidiGenerateContentClientMessage.pb(message)
    try:
        json_format.Parse(raw, pb, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise SchemaError(_google_reason(str(exc))) from None
    if pb.WhichOneof("message_type") is None:
        raise SchemaError("Invalid JSON payload received. The message is empty.")
    return message


def server_frame_errors(raw: str | bytes) -> str | None:
    """Why a server frame is not a valid `BidiGenerateContentServerMessage`, or None."""
    pb = v1beta.BidiGenerateContentServerMessage.pb(v1beta.BidiGenerateContentServerMessage())
    try:
        json_format.Parse(raw, pb, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        return str(exc)
    return None


def _google_reason(error: str) -> str:
    """protobuf's parse error in Google's wording, e.g. `Unknown name "finished" at
    'realtime_input.audio': Cannot find field.`, short enough for a close reason."""
    unknown = _UNKNOWN.search(error)
    if unknown is not None:
        name, where = unknown.groups()
        return f"{_INVALID} Unknown name \"{name}\" at '{where}': Cannot find field."
    return f"{_INVALID} {error.splitlines()[0] if error else ''}"
