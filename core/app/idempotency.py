"""Idempotency-Key storage, in the same transaction as the work it protects.

The rules (key, fingerprint, what a retry gets) are `core.domain.idempotency`; this
module keeps the record. The key row is claimed inside the very transaction that
reserves credits and inserts the call, so two concurrent retries cannot both reach the
carrier: the second one waits on the unique index, then sees the first one's row.

Errors raised before the claim commits (validation, quota, cap, maintenance) leave no
key, so a retry runs again; a dial failure after it is stored and replayed.
Keys expire after IDEMPOTENCY_TTL_SEC (24 h); the reconciler deletes expired ones.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from core.domain.errors import CallagentError
from core.domain.idempotency import Key, Recorded, Stored, verdict
from core.store.database import Conn
from core.store.sql import idempotency as sql


def _recorded(row: asyncpg.Record) -> Recorded:
    return Recorded(
        fingerprint=row["fingerprint"],
        status=row["status"],
        response=row["response"],
        error_reason=row["error_reason"],
        error_message=row["error_message"],
        stale=row["stale"],
    )


async def lookup(pool: asyncpg.Pool[Any], key: Key, stale_sec: float) -> Stored | None:
    """The fast path for retries: a finished (or conflicting, or running) key, no lock."""
    row = await pool.fetchrow(sql.READ, key.customer_id, key.key, stale_sec)
    return None if row is None else verdict(_recorded(row), key)


async def claim(conn: Conn, key: Key, ttl_sec: float, stale_sec: float) -> Stored | None:
    """Claim the key inside the caller's transaction; None if this request now owns it.

    An expired row is taken over. A concurrent first attempt blocks this insert on the
    primary key until it commits or rolls back.
    """
    claimed = await conn.fetchval(sql.CLAIM, key.customer_id, key.key, key.fingerprint, ttl_sec)
    if claimed:
        return None
    row = await conn.fetchrow(sql.READ, key.customer_id, key.key, stale_sec)
    assert row is not None, "the conflicting key is live"
    return verdict(_recorded(row), key)


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
        sql.FINISH,
        key.customer_id,
        key.key,
        call_id,
        response,
        error.reason if error else None,
        error.message if error else None,
    )


async def sweep(pool: asyncpg.Pool[Any]) -> int:
    """Delete expired keys; return how many."""
    result = await pool.execute(sql.SWEEP)
    return int(result.split()[-1])
