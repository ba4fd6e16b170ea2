"""The merged transcript of a call (`GET /calls/{id}/transcript-merged`).

An answered call's merge job (`core.app.merges`) stores the merge on the call when it is
done; until then the answer is "pending" (202). A call with no job (never answered, or
ended before merges existed) gets the degraded merge of its live lines at once
(`core.domain.transcripts.merge_live`): for an unanswered call that is an empty timeline.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from core.domain import call_states as st
from core.domain import transcripts
from core.domain.errors import not_found
from core.store.sql import merges as sql


async def merged_for(
    pool: asyncpg.Pool[Any], customer_id: str, call_id: str
) -> dict[str, Any] | None:
    """The merged transcript of this customer's call, or None while it is pending (the
    call is live, or its merge job has not finished).

    Raises:
        CallagentError: NOT_FOUND for an unknown call or another customer's, alike.
    """
    row = await pool.fetchrow(sql.RESULT_FOR_CUSTOMER, call_id, customer_id)
    if row is None:
        raise not_found("call")
    if row["status"] not in st.TERMINAL:
        return None
    if row["merged_transcript"] is not None:
        return dict(row["merged_transcript"])
    if row["merge_state"] == "waiting":
        return None
    return transcripts.merge_live(row["transcript_full"], row["duration_sec"])
