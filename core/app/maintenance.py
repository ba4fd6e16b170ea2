"""The admin-set maintenance window: while active, new calls are refused with 503.

A single row (id = 1) so every replica reads the same state; active calls keep running.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import asyncpg

from core.domain.errors import CallagentError
from core.store.sql import maintenance as sql


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    active: bool
    message: str
    resume_at: dt.datetime | None

    def public(self) -> dict[str, Any] | None:
        """The MeDTO `maintenance` object, or None when not in maintenance."""
        if not self.active:
            return None
        return {
            "active": True,
            "message": self.message,
            "resume_at": self.resume_at.isoformat() if self.resume_at else None,
        }


async def get(conn: asyncpg.Connection[Any] | asyncpg.Pool[Any]) -> Window:
    row = await conn.fetchrow(sql.GET)
    assert row is not None, "migration 0001 inserts the maintenance row"
    return Window(row["active"], row["message"], row["resume_at"])


async def set_window(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any], message: str, resume_at: dt.datetime | None
) -> Window:
    if not message.strip():
        raise CallagentError("INVALID_ARGUMENT_FIELD", "a maintenance message is required")
    if resume_at is not None and resume_at.tzinfo is None:
        raise CallagentError("INVALID_ARGUMENT_FIELD", "resume_at must carry a timezone")
    await conn.execute(
        sql.SET,
        message.strip(),
        resume_at,
    )
    return await get(conn)


async def clear(conn: asyncpg.Connection[Any] | asyncpg.Pool[Any]) -> Window:
    await conn.execute(sql.CLEAR)
    return await get(conn)


def gate(window: Window) -> None:
    """Raise MAINTENANCE (503, with message and resume_at) while a window is active."""
    if window.active:
        extra = {"resume_at": window.resume_at.isoformat()} if window.resume_at else {}
        raise CallagentError("MAINTENANCE", window.message, **extra)
