"""Scheduling a call's merged transcript: the job row written when an answered call ends,
woken when its recording arrives; `core.app.merges` runs the jobs."""

from __future__ import annotations

from typing import Any

import asyncpg

from core.store.database import Conn
from core.store.sql import merges as sql


async def enqueue(conn: Conn, call_id: str) -> None:
    """Schedule the merge of a call that was answered (inside its ending transaction)."""
    await conn.execute(sql.ENQUEUE, call_id)


async def wake(conn: Conn | asyncpg.Pool[Any], call_id: str) -> None:
    """The recording is stored: a merge waiting for it may run now."""
    await conn.execute(sql.WAKE, call_id)


async def pending(pool: asyncpg.Pool[Any], call_id: str) -> bool:
    """True while the call's merge job has not finished (False when it has none)."""
    return bool(await pool.fetchval(sql.PENDING, call_id))
