"""Wire-format checks on request values before they are put into a gRPC request.

The contract types a value loosely (an integer, a date-time, a string header) while
protobuf and gRPC metadata are strict: an int32 overflows, a Timestamp stops at year
9999, metadata carries printable ASCII only, and UTF-8 cannot encode a lone surrogate.
Left unchecked, each of these raised inside the gateway and became a 500. Checking them
here is validation of the contract's own types and sizes, not a business rule: core
still decides what a valid limit, key or slot is.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from google.protobuf import timestamp_pb2

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# An API key is ~46 characters and a signed X-Gateway-Context ~200; past this length a
# credential cannot be valid, and gRPC would refuse the metadata (RESOURCE_EXHAUSTED).
MAX_CREDENTIAL_LENGTH = 4096
# parsed_slots are a handful of structured fields; deeper or larger is not a booking.
MAX_SLOTS_DEPTH = 20
MAX_SLOTS_BYTES = 64 * 1024

_CREDENTIAL = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what gRPC metadata can carry
_EVENT_ID = re.compile(r"[0-9]{1,19}")


class Rejected(Exception):
    """A request value the gateway refuses before calling core; rendered as an HTTP error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def credential_ok(value: str) -> bool:
    """Whether a credential header value could be valid (and can travel as gRPC metadata)."""
    return len(value) <= MAX_CREDENTIAL_LENGTH and _CREDENTIAL.fullmatch(value) is not None


def event_id(value: str) -> int:
    """A Last-Event-ID header as the non-negative int64 event id it must be.

    Raises:
        Rejected: 400 INVALID_ARGUMENT_FIELD for anything else (signs, non-ASCII digits,
            more than 19 digits, beyond int64).
    """
    if _EVENT_ID.fullmatch(value) is None or int(value) > INT64_MAX:
        raise Rejected(
            400,
            "INVALID_ARGUMENT_FIELD",
            f"Last-Event-ID must be a non-negative integer event id of at most {INT64_MAX}",
        )
    return int(value)


def int32(name: str, value: int, code: str = "INVALID_ARGUMENT_FIELD") -> int:
    """`value` unchanged when it fits the int32 field it is sent in.

    Raises:
        Rejected: 400 `code` otherwise (core checks the real range of what fits).
    """
    if not -INT32_MAX - 1 <= value <= INT32_MAX:
        raise Rejected(400, code, f"{name} is out of range (must fit a 32-bit integer)")
    return value


def timestamp(name: str, value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A date-time as a protobuf Timestamp (naive means UTC).

    Raises:
        Rejected: 400 INVALID_ARGUMENT_FIELD when the instant, in UTC, falls outside
            years 1–9999 (e.g. 9999-12-31T23:59:59-23:59).
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    out = timestamp_pb2.Timestamp()
    try:
        out.FromDatetime(value.astimezone(dt.UTC))
    except (OverflowError, ValueError):
        raise Rejected(
            400,
            "INVALID_ARGUMENT_FIELD",
            f"{name} is out of range: it must fall within years 0001-9999 in UTC",
        ) from None
    return out


def encodable(text: str) -> bool:
    """Whether `text` has a UTF-8 encoding (JSON admits lone surrogates; protobuf does not)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def json_problem(value: Any, max_depth: int, max_bytes: int) -> str | None:
    """Why a JSON value cannot be sent as a protobuf Struct, or None when it can.

    Walks iteratively (no recursion limit), counting nesting depth, an estimate of the
    serialized size, and strings (keys too) that UTF-8 cannot encode.
    """
    size = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"is nested more than {max_depth} levels deep"
            size += 2
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for k, v in children:
                if isinstance(k, str):
                    if not encodable(k):
                        return "contains a string that is not valid Unicode (a lone surrogate)"
                    size += len(k) + 4
                stack.append((v, depth + 1))
        elif isinstance(item, str):
            if not encodable(item):
                return "contains a string that is not valid Unicode (a lone surrogate)"
            size += len(item) + 3
        else:
            size += 8
        if size > max_bytes:
            return f"is larger than {max_bytes // 1024} KB"
    return None
