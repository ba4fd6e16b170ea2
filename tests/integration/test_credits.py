"""The credit ledger's invariant under concurrency: usage = open + captured, settled once."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import pytest

from core.app import credits
from core.domain.errors import CallagentError
from tests.conftest import new_customer


async def _invariant(pool: asyncpg.Pool[Any], customer_id: str) -> tuple[int, int]:
    row = await pool.fetchrow(
        """SELECT c.current_usage,
                  (SELECT coalesce(sum(amount), 0) FROM credit_reservations
                   WHERE customer_id = c.customer_id AND status = 'open')
                + (SELECT coalesce(sum(captured_amount), 0) FROM credit_reservations
                   WHERE customer_id = c.customer_id AND status = 'captured'
                     AND settled_at >= c.period_start) AS ledger
           FROM customers c WHERE customer_id = $1""",
        customer_id,
    )
    assert row is not None
    return int(row["current_usage"]), int(row["ledger"])


async def test_reserve_capture_release(pool: asyncpg.Pool[Any]) -> None:
    c = await new_customer(pool, quota=1000)
    async with pool.acquire() as conn:
        r1 = await credits.reserve(conn, c.customer_id, 300)
        r2 = await credits.reserve(conn, c.customer_id, 300)
        assert await credits.capture(conn, r1, 120) == 120
        assert await credits.capture(conn, r1, 120) is None  # settled once
        assert await credits.release(conn, r2) is True
        assert await credits.release(conn, r2) is False
        r3 = await credits.reserve(conn, c.customer_id, 100)
        assert await credits.capture(conn, r3, 999) == 100  # capped by the reservation
    usage, ledger = await _invariant(pool, c.customer_id)
    assert usage == ledger == 220


async def test_quota_exceeded(pool: asyncpg.Pool[Any]) -> None:
    c = await new_customer(pool, quota=500)
    async with pool.acquire() as conn:
        await credits.reserve(conn, c.customer_id, 400)
        with pytest.raises(CallagentError) as err:
            await credits.reserve(conn, c.customer_id, 200)
    assert err.value.reason == "QUOTA_EXCEEDED"
    assert err.value.spec.http_status == 402
    usage, ledger = await _invariant(pool, c.customer_id)
    assert usage == ledger == 400


async def test_invariant_under_50_concurrent_operations(pool: asyncpg.Pool[Any]) -> None:
    c = await new_customer(pool, quota=3000)
    rng = random.Random(7)
    refused = 0

    async def worker(i: int) -> None:
        nonlocal refused
        async with pool.acquire() as conn:
            try:
                reservation = await credits.reserve(conn, c.customer_id, 100)
            except CallagentError:
                refused += 1
                return
            await asyncio.sleep(rng.random() / 100)
            action = i % 3
            if action == 0:
                await credits.release(conn, reservation)
            elif action == 1:
                await credits.capture(conn, reservation, rng.randint(0, 150))
            # a third of the reservations stay open
            # and a racing duplicate settlement must change nothing:
            await asyncio.gather(credits.release(conn, reservation), return_exceptions=True)

    await asyncio.gather(*(worker(i) for i in range(50)))
    usage, ledger = await _invariant(pool, c.customer_id)
    assert usage == ledger
    assert usage <= 3000
    statuses = await pool.fetch("SELECT status, count(*) FROM credit_reservations GROUP BY status")
    assert sum(r["count"] for r in statuses) + refused == 50


async def test_concurrent_double_settlement_moves_usage_once(pool: asyncpg.Pool[Any]) -> None:
    c = await new_customer(pool, quota=1000)
    async with pool.acquire() as conn:
        reservation = await credits.reserve(conn, c.customer_id, 500)

    async def settle(kind: int) -> object:
        async with pool.acquire() as conn:
            if kind % 2:
                return await credits.release(conn, reservation)
            return await credits.capture(conn, reservation, 200)

    results = await asyncio.gather(*(settle(i) for i in range(20)))
    winners = [r for r in results if r not in (None, False)]
    assert len(winners) == 1
    usage, ledger = await _invariant(pool, c.customer_id)
    assert usage == ledger and usage in (0, 200)


async def test_new_month_rolls_usage_to_open_reservations(pool: asyncpg.Pool[Any]) -> None:
    c = await new_customer(pool, quota=1000)
    async with pool.acquire() as conn:
        captured = await credits.reserve(conn, c.customer_id, 600)
        await credits.capture(conn, captured, 600)
        held = await credits.reserve(conn, c.customer_id, 300)
        await conn.execute("UPDATE customers SET period_start = period_start - interval '1 month'")
        await conn.execute(
            "UPDATE credit_reservations SET settled_at = settled_at - interval '1 month'"
        )
        fresh = await credits.reserve(conn, c.customer_id, 600)  # fits only after the roll
        assert fresh and held
    usage, ledger = await _invariant(pool, c.customer_id)
    assert usage == ledger == 900
