"""The merged transcript of a call (`GET /calls/{id}/transcript-merged`).

Only the degraded merge exists yet: built from the live lines once the call has ended
(`core.domain.transcripts.merge_live`). The recording-based merge will take its place
when it lands and keep this one as its fallback.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from core.domain import call_states as st
from core.domain import transcripts
from core.domain.errors import not_found
from core.store.sql import calls as sql


async def merged_for(
    pool: asyncpg.Pool[Any], customer_id: str, call_id: str
) -> dict[str, Any] | None:
    """The merged transcript of this customer's call, or None while the call is live
    (lines may still arrive, so any merge would be premature).

    Raises:
        CallagentError: NOT_FOUND for an unknown call or another customer's, alike.
    """
    row = await pool.fetchrow(sql.MERGE_INPUT_FOR_CUSTOMER, call_id, customer_id)
    if row is None:
        raise not_found("call")
    if row["status"] not in st.TERMINAL:
        return None
    return transcripts.merge_live(row["transcript_full"], row["duration_sec"])
