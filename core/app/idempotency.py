"""Idempotency-Key handling with Stripe's semantics, in the same transaction as the work.

A key is scoped to the customer. The request's fingerprint (operation + canonical
body) and its final response are stored. The key row is claimed inside the very
transaction that reserves credits and inserts the call, so two concurrent retries
cannot both reach the carrier: the second one waits on the unique index, then sees
the first one's row. Outcomes for a key that already exists:

- same fingerprint, finished → the stored response, replayed (`replayed=true`);
- different fingerprint → IDEMPOTENCY_CONFLICT;
- still running, lock fresh → IDEMPOTENCY_IN_PROGRESS;
- still running, lock stale (the worker may have died after dialing) →
  IDEMPOTENCY_STATE_UNKNOWN; the client must check GET /calls?since= first.

Errors raised before the claim commits (validation, quota, cap, maintenance) leave no
key, so a retry runs again; a dial failure after it is stored and replayed.
Keys expire after IDEMPOTENCY_TTL_SEC (24 h); the reconciler deletes expired ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import asyncpg
import orjson

from core.domain.errors import REASONS, CallagentError
from core.store.database import Conn

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


def make_key(customer_id: str, key: str, operation: str, request: Any) -> Key | None:
    """None without a key; the fingerprint covers the operation and the canonical body."""
    if not key:
        return None
    if len(key) > MAX_KEY_LENGTH:
        raise CallagentError(
            "IDEMPOTENCY_KEY_TOO_LONG", f"Idempotency-Key must be at most {MAX_KEY_LENGTH} chars"
        )
    canonical = orjson.dumps([operation, request], option=orjson.OPT_SORT_KEYS)
    return Key(customer_id, key, hashlib.sha256(canonical).digest())


def _verdict(row: asyncpg.Record, key: Key, stale_sec: float) -> Stored:
    if row["fingerprint"] != key.fingerprint:
        raise CallagentError(
            "IDEMPOTENCY_CONFLICT", "this Idempotency-Key was already used with another request"
        )
    if row["status"] == "done":
        error = None
        if row["error_reason"] in REASONS:
            error = CallagentError(row["error_reason"], row["error_message"] or "")
        return Stored(row["response"], error)
    if row["stale"]:
        raise CallagentError(
            "IDEMPOTENCY_STATE_UNKNOWN",
            "the first request with this key stopped mid-way and may have dialed; check "
            "GET /calls?since=... before retrying with a new key",
        )
    raise CallagentError(
        "IDEMPOTENCY_IN_PROGRESS",
        "the first request with this key is still running; retry shortly with the same key",
    )


_READ = """
SELECT fingerprint, status, response, error_reason, error_message,
       locked_at < now() - make_interval(secs => $3) AS stale
FROM idempotency_keys WHERE customer_id = $1 AND key = $2 AND expires_at > now()
"""


async def lookup(pool: asyncpg.Pool[Any], key: Key, stale_sec: float) -> Stored | None:
    """The fast path for retries: a finished (or conflicting, or running) key, no lock."""
    row = await pool.fetchrow(_READ, key.customer_id, key.key, stale_sec)
    return None if row is None else _verdict(row, key, stale_sec)


async def claim(conn: Conn, key: Key, ttl_sec: float, stale_sec: float) -> Stored | None:
    """Claim the key inside the caller's transaction; None if this request now owns it.

    An expired row is taken over. A concurrent first attempt blocks this insert on the
    primary key until it commits or rolls back.
    """
    claimed = await conn.fetchval(
        """INSERT INTO idempotency_keys (customer_id, key, fingerprint, status, expires_at)
           VALUES ($1, $2, $3, 'running', now() + make_interval(secs => $4))
           ON CONFLICT (customer_id, key) DO UPDATE
               SET fingerprint = EXCLUDED.fingerprint, status = 'running', response = NULL,
                   error_reason = NULL, error_message = NULL, call_id = NULL,
                   locked_at = now(), created_at = now(), expires_at = EXCLUDED.expires_at
               WHERE idempotency_keys.expires_at <= now()
           RETURNING true""",
        key.customer_id,
        key.key,
        key.fingerprint,
        ttl_sec,
    )
    if claimed:
        return None
    row = await conn.fetchrow(_READ, key.customer_id, key.key, stale_sec)
    assert row is not None, "the conflicting key is live"
    return _verdict(row, key, stale_sec)


async def finish(
    conn: Conn | asyncpg.Pool[Any],
    key: Key,
    *,
    call_id: str | None,
    response: bytes | None = None,
    error: CallagentError | None = None,
) -> None:
    """Record the first attempt's final answer so retries replay it."""
    await conn.execute(
        """UPDATE idempotency_keys SET status = 'done', call_id = $3, response = $4,
               error_reason = $5, error_message = $6
           WHERE customer_id = $1 AND key = $2""",
        key.customer_id,
        key.key,
        call_id,
        response,
        error.reason if error else None,
        error.message if error else None,
    )


async def sweep(pool: asyncpg.Pool[Any]) -> int:
    """Delete expired keys; return how many."""
    result = await pool.execute("DELETE FROM idempotency_keys WHERE expires_at <= now()")
    return int(result.split()[-1])
