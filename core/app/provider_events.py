"""Carrier callbacks (status, answering-machine detection, recording) applied to calls.

Providers repeat and reorder callbacks, so a stale status (one the state machine no
longer allows) is logged and ignored rather than failing the callback; everything else
goes through the same status change as any other (`CallService.transition`). A completed
call that media attached to but has not reported on yet waits for that report, or for its
session to be found lost, before it is charged; one no media session ever attached to is
failed, not charged (`_complete`). An AMD
result also becomes a command to the call's media session, wherever the callback landed.
"""

from __future__ import annotations

import dataclasses
import logging

from core.app import call_status, recordings, sessions
from core.app.call_status import Change
from core.app.calls import CallService
from core.domain import call_states as st
from core.domain import stuck_calls
from core.domain.errors import CallagentError, not_found
from core.store.sql import calls as sql

log = logging.getLogger(__name__)

# Carrier statuses that end a call without an agent outcome: the status is the outcome.
_SELF_DESCRIBING = (st.BUSY, st.NO_ANSWER, st.FAILED, st.CANCELLED)


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A carrier callback, already authenticated by the media process."""

    kind: str  # status | amd | recording
    call_sid: str
    call_id: str = ""
    status: str = ""
    duration_sec: float | None = None
    answered_by: str | None = None
    recording_sid: str | None = None
    recording_url: str | None = None
    recording_duration_sec: float | None = None
    recording_status: str | None = None


async def apply_provider_event(service: CallService, event: ProviderEvent) -> bool:
    """Apply a carrier callback; False when it is stale (repeated or out of order)."""
    pool = service.pool
    call_id = event.call_id or await pool.fetchval(sql.ID_BY_SID, event.call_sid)
    if not call_id:
        raise not_found("call")
    if event.kind == "status":
        if event.status not in st.ALL:
            raise CallagentError("INVALID_ARGUMENT_FIELD", f"unknown status {event.status!r}")
        change = Change(call_sid=event.call_sid or None, duration_sec=event.duration_sec)
        if event.status in _SELF_DESCRIBING:
            change = dataclasses.replace(
                change,
                outcome_type=event.status,
                outcome_summary=f"carrier reported {event.status}",
            )
        try:
            if event.status == st.COMPLETED:
                return await _complete(service, call_id, change)
            return await service.transition(call_id, event.status, change)
        except CallagentError as err:
            if err.reason != "ILLEGAL_TRANSITION":
                raise
            log.info("stale carrier status ignored", extra={"call_id": call_id, "to": event.status})
            return False
    if event.kind == "amd":
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.SET_ANSWERED_BY, call_id, event.answered_by)
            if event.answered_by:
                # The callback may have reached a media pod that does not own the call:
                # the owner's session gets it as a command (a repeat on the owner is harmless).
                command = sessions.Command(call_id, "answered_by", answered_by=event.answered_by)
                await sessions.publish(conn, command)
        return True
    if event.kind == "recording":
        if event.recording_status not in (None, "completed") or not event.recording_sid:
            return False
        # False for a repeat, or when the lazy lookup already stored and announced it.
        return await recordings.remember(
            pool,
            call_id,
            event.recording_sid,
            event.recording_url,
            event.recording_duration_sec,
        )
    raise CallagentError("INVALID_ARGUMENT_FIELD", f"unknown event kind {event.kind!r}")


async def _complete(service: CallService, call_id: str, change: Change) -> bool:
    """The carrier completed the call: settle it as `call_states.on_carrier_completed`
    says, or keep the carrier's end on the row until media's outcome or the session's loss
    settles it. One row lock orders it against `call_record.record_outcome`, so exactly one
    of the two completes the call."""
    async with service.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql.LOCK_FOR_CARRIER_END, call_id)
        if row is None:
            raise not_found("call")
        target = st.on_carrier_completed(
            row["status"], media_attached=row["media_attached"], reported=row["reported"]
        )
        if target is None:
            await conn.execute(
                sql.RECORD_CARRIER_END, call_id, change.call_sid, change.duration_sec
            )
            log.info(
                "carrier completed the call; waiting for media's outcome",
                extra={"call_id": call_id},
            )
            return True
        if target == st.FAILED:
            change = dataclasses.replace(
                change, outcome_type="failed", outcome_summary=stuck_calls.NO_MEDIA_SUMMARY
            )
            log.warning("an answered call had no media session", extra={"call_id": call_id})
        return await call_status.transition_in(
            conn,
            call_id,
            target,
            change,
            rate_cents_per_minute=service.policy.rate_cents_per_minute,
        )
