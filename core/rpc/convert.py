"""Small conversions between database values and protobuf well-known types."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2


def ts(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp from an aware datetime (naive values are taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def from_ts(value: timestamp_pb2.Timestamp, present: bool) -> dt.datetime | None:
    return value.ToDatetime(tzinfo=dt.UTC) if present else None


def struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    out = struct_pb2.Struct()
    out.update(value)
    return out
