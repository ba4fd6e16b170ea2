"""A call's recording, remembered once and announced once.

The carrier's recording callback and the lazy lookup (an admin fetches the recording
before, or without, that callback) both end here: whichever comes first stores the
provider's recording sid, URL and duration and appends `recording_ready`, in one
transaction (waking the call's merged-transcript job, which waits for it); the other
finds the recording already stored and changes nothing.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from core.app import events, merge_jobs
from core.store.sql import calls as sql


def recording_path(call_id: str) -> str:
    """Where the recording is served (admin keys only): never the provider's URL."""
    return f"/calls/{call_id}/recording"


async def remember(
    pool: asyncpg.Pool[Any],
    call_id: str,
    recording_sid: str,
    url: str | None,
    duration_sec: float | None,
) -> bool:
    """Store the call's recording and emit `recording_ready`; False (and nothing
    written) when the call already has one."""
    async with pool.acquire() as conn, conn.transaction():
        stored = await conn.fetchval(sql.SET_RECORDING, call_id, recording_sid, url, duration_sec)
        if stored is None:
            return False
        await events.append(
            conn,
            call_id,
            "recording_ready",
            {"recording_url": recording_path(call_id), "duration_sec": duration_sec},
        )
        await merge_jobs.wake(conn, call_id)
    return True
