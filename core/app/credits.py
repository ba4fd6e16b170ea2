"""The credit ledger: reserve before a call, then capture the real charge or release.

Invariant (tested under concurrency): for every customer,
    current_usage = sum(open reservation amounts)
                  + sum(captured amounts settled since period_start).
Each operation is one SQL statement that moves a reservation out of `open` and
adjusts `current_usage` together, so a reservation settles exactly once even when
two settlements race (the loser finds no open row and changes nothing).
The quota window is monthly: the first operation in a new month rolls it over.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from common import metrics
from core.app.api_keys import new_id
from core.domain.errors import CallagentError
from core.store.database import Conn
from core.store.sql import credits as sql


async def reserve(conn: Conn, customer_id: str, amount: int, call_id: str | None = None) -> str:
    """Hold `amount` credits; return the reservation id.

    Raises:
        CallagentError: QUOTA_EXCEEDED when the hold would pass quota_limit.
    """
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    reservation_id = await conn.fetchval(sql.RESERVE, customer_id, amount, new_id("res"), call_id)
    if reservation_id is None:
        raise CallagentError(
            "QUOTA_EXCEEDED",
            f"not enough credits: reserving {amount} would exceed this month's quota",
        )
    metrics.CREDIT_HOLDS.labels("reserved").inc()
    return str(reservation_id)


async def capture(conn: Conn, reservation_id: str, charge: int) -> int | None:
    """Settle with the real charge (capped by the reservation); None if already settled."""
    if charge < 0:
        raise ValueError("a charge cannot be negative")
    async with conn.transaction():
        customer_id = await conn.fetchval(sql.RESERVATION_OWNER, reservation_id)
        if customer_id is None:
            return None
        await conn.execute(sql.ROLL_PERIOD, customer_id)
        captured = await conn.fetchval(sql.CAPTURE, reservation_id, charge)
    if captured is None:
        return None
    metrics.CREDIT_HOLDS.labels("captured").inc()
    return int(captured)


async def roll_period(conn: Conn | asyncpg.Pool[Any], customer_id: str) -> None:
    """Start a new monthly window if the customer's is stale (usage := open holds)."""
    await conn.execute(sql.ROLL_PERIOD, customer_id)


async def release(conn: Conn, reservation_id: str) -> bool:
    """Give the whole hold back; False if it was already settled."""
    amount = await conn.fetchval(sql.RELEASE, reservation_id)
    if amount is None:
        return False
    metrics.CREDIT_HOLDS.labels("released").inc()
    return True
