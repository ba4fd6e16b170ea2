"""The dial queue's entries: join, claim under a lease, finish, and recover expired leases.

Queued calls wait in `dial_queue` (FIFO by `seq`). A claim takes the oldest pending entry
with `FOR UPDATE … SKIP LOCKED`, skipping customers at their concurrency cap without
blocking anyone behind them, and moves its call to `scheduled` in the same transaction.
A claimed entry is `warming` under a lease. When a lease expires (its dialer died),
recovery looks at the call: already dialed → done; never sent to the carrier → back
to the queue; sent but no answer from the carrier recorded → failed, never redialed.
Who claims, and how fast, is `core.app.drainer`.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from common import metrics
from core.app.api_keys import new_id
from core.app.call_status import Change, transition_in
from core.domain import call_states as st
from core.domain.errors import CallagentError
from core.store.database import Conn
from core.store.sql import calls as calls_sql
from core.store.sql import dial_queue as sql

log = logging.getLogger(__name__)

CHANNEL = "dial_queue"
OPEN_STATES = ("pending", "warming")


async def add(conn: Conn, call_id: str, customer_id: str) -> tuple[str, int]:
    """Append a call to the queue; return (queue_id, position), 0 being the front."""
    queue_id = new_id("q")
    seq = await conn.fetchval(sql.ADD, queue_id, call_id, customer_id)
    ahead = await conn.fetchval(sql.COUNT_AHEAD, list(OPEN_STATES), seq)
    await conn.execute(sql.NOTIFY, CHANNEL)
    return queue_id, int(ahead)


async def leave(conn: Conn, call_id: str) -> None:
    """Take a call out of the queue (it was cancelled); a no-op if it is not queued."""
    await conn.execute(sql.LEAVE, call_id)


async def claim(
    pool: asyncpg.Pool[Any], *, lease_sec: float, pod: str, rate_cents_per_minute: int
) -> tuple[str, str] | None:
    """Claim the next dialable entry and schedule its call; (queue_id, call_id) or None."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql.CLAIM, lease_sec, pod, list(st.IN_FLIGHT))
        if row is None:
            return None
        try:
            await transition_in(
                conn,
                row["call_id"],
                st.SCHEDULED,
                Change(),
                rate_cents_per_minute=rate_cents_per_minute,
            )
        except CallagentError:
            # Cancelled (or otherwise moved on) while queued: nothing to dial.
            await conn.execute(sql.MARK_DONE, row["queue_id"])
            return None
        metrics.DIAL_WAIT.observe(row["waited_sec"])
        return row["queue_id"], row["call_id"]


async def pending(pool: asyncpg.Pool[Any]) -> int:
    """How many calls wait to be claimed."""
    return int(await pool.fetchval(sql.PENDING))


async def mark_done(pool: asyncpg.Pool[Any], queue_id: str) -> None:
    await pool.execute(sql.MARK_DONE, queue_id)


async def recover_expired(pool: asyncpg.Pool[Any], *, rate_cents_per_minute: int) -> int:
    """Resolve `warming` entries whose lease ran out; return how many were resolved."""
    resolved = 0
    async with pool.acquire() as conn, conn.transaction():
        for row in await conn.fetch(sql.EXPIRED_LEASES):
            resolved += 1
            state = "done"
            if row["status"] == st.SCHEDULED and row["call_sid"] is None:
                target = st.QUEUED
                state = "pending"
                if row["dial_started_at"] is not None:
                    target, state = st.FAILED, "done"
                    await conn.execute(
                        calls_sql.SET_OUTCOME_TEXT,
                        row["call_id"],
                        "failed",
                        "the dialer stopped mid-dial; not redialed to avoid calling twice",
                    )
                await transition_in(
                    conn,
                    row["call_id"],
                    target,
                    Change(),
                    rate_cents_per_minute=rate_cents_per_minute,
                )
            log.warning(
                "recovered an expired dial lease",
                extra={"call_id": row["call_id"], "to": state},
            )
            await conn.execute(sql.RESOLVE_LEASE, row["queue_id"], state)
    return resolved
