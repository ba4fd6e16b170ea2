"""A call's provider usage, as media and the merge report it (`call_usage`).

Media reports running totals (`ProviderUsage`), so each write keeps the larger value column
by column: a repeated, replayed or late report counts once. The merge records the recording
seconds it sent to Deepgram. The cost of it all is the domain's arithmetic
(`core.domain.provider_costs`), done when the call is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from core.store.database import Conn
from core.store.sql import usage as sql

LIVE_FIELDS = (
    "gemini_input_tokens",
    "gemini_output_tokens",
    "gemini_input_audio_tokens",
    "gemini_input_text_tokens",
    "gemini_output_audio_tokens",
    "gemini_output_text_tokens",
    "deepgram_live_ms",
)


async def record_live(
    conn: Conn | asyncpg.Pool[Any], call_id: str, totals: Mapping[str, int]
) -> None:
    """Media's running totals for the call (unknown call: nothing is written)."""
    await conn.execute(sql.RECORD_LIVE, call_id, *(max(int(totals[f]), 0) for f in LIVE_FIELDS))


async def record_batch(conn: Conn | asyncpg.Pool[Any], call_id: str, seconds: float) -> None:
    """The recording the merge sent to Deepgram's batch API, in seconds."""
    await conn.execute(sql.RECORD_BATCH, call_id, max(round(seconds * 1000), 0))
