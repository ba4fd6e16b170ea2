"""Idempotency-Key rules with Stripe's semantics: the key, its fingerprint, and the verdict.

A key is scoped to the customer. A request's fingerprint covers the operation and the
canonical body (sorted keys), so the same key sent with another body is told apart from
a retry. When a key already has a row, `verdict` decides what the retry gets:

- same fingerprint, finished → the stored response (or stored error), replayed;
- different fingerprint → IDEMPOTENCY_CONFLICT;
- still running, lock fresh → IDEMPOTENCY_IN_PROGRESS;
- still running, lock stale (the worker may have died after dialing) →
  IDEMPOTENCY_STATE_UNKNOWN; the client must check GET /calls?since= first.

Storage and the claim inside the start transaction live in `core.app.idempotency`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import orjson

from core.domain.errors import REASONS, CallagentError

MAX_KEY_LENGTH = 255


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    """An Idempotency-Key for one request: who, which key, and what the request was."""

    customer_id: str
    key: str
    fingerprint: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """A finished first attempt: its serialized response, or the error it raised."""

    response: bytes | None
    error: CallagentError | None


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """What is on record for a key that already exists (its stored row, plus staleness)."""

    fingerprint: bytes
    status: str  # running | done
    response: bytes | None
    error_reason: str | None
    error_message: str | None
    stale: bool


def make_key(customer_id: str, key: str | None, operation: str, request: Any) -> Key | None:
    """None without a key; the fingerprint covers the operation and the canonical body.

    A key that was sent but is blank (HTTP strips a whitespace-only header to empty) is
    refused rather than ignored: ignoring it turned every retry into another call.

    Raises:
        CallagentError: IDEMPOTENCY_KEY_BLANK for an empty or whitespace-only key;
            IDEMPOTENCY_KEY_TOO_LONG past MAX_KEY_LENGTH characters.
    """
    if key is None:
        return None
    if not key.strip():
        raise CallagentError(
            "IDEMPOTENCY_KEY_BLANK",
            "Idempotency-Key must not be empty or whitespace; omit the header for no key",
        )
    if len(key) > MAX_KEY_LENGTH:
        raise CallagentError(
            "IDEMPOTENCY_KEY_TOO_LONG", f"Idempotency-Key must be at most {MAX_KEY_LENGTH} chars"
        )
    canonical = orjson.dumps([operation, request], option=orjson.OPT_SORT_KEYS)
    return Key(customer_id, key, hashlib.sha256(canonical).digest())


def verdict(recorded: Recorded, key: Key) -> Stored:
    """What a request with `key` gets when `recorded` already exists for it.

    Raises:
        CallagentError: IDEMPOTENCY_CONFLICT, IDEMPOTENCY_STATE_UNKNOWN or
            IDEMPOTENCY_IN_PROGRESS (see the module docstring).
    """
    if recorded.fingerprint != key.fingerprint:
        raise CallagentError(
            "IDEMPOTENCY_CONFLICT", "this Idempotency-Key was already used with another request"
        )
    if recorded.status == "done":
        error = None
        if recorded.error_reason in REASONS:
            error = CallagentError(recorded.error_reason, recorded.error_message or "")
        return Stored(recorded.response, error)
    if recorded.stale:
        raise CallagentError(
            "IDEMPOTENCY_STATE_UNKNOWN",
            "the first request with this key stopped mid-way and may have dialed; check "
            "GET /calls?since=... before retrying with a new key",
        )
    raise CallagentError(
        "IDEMPOTENCY_IN_PROGRESS",
        "the first request with this key is still running; retry shortly with the same key",
    )
