"""The merged transcript job: after an answered call ends, fuse the bot-only recording's
batch word timings with the live callee lines (`core.domain.transcript_merge`).

Durable and shared by every replica: the job row is written in the same transaction as
the call's outcome, waits for the recording callback (`wake`) up to
MERGE_RECORDING_WAIT_SEC and then asks the carrier itself, is claimed with `FOR UPDATE
SKIP LOCKED` under a lease (a core that dies mid-merge leaves a lease that expires, and
any replica takes the job again), and is retried with exponential backoff. When Deepgram
keeps failing, is not configured, or the recording never appears, the job still ends:
with the degraded merge built from the live lines alone, marked as such. Either way the
merge is stored on the call and `transcript_ready` is appended in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

import asyncpg

from core.adapters.deepgram_batch import DeepgramBatch, TranscriptionError
from core.app import events, usage
from core.app.calls import CallService
from core.domain import transcript_merge, transcripts
from core.domain.errors import CallagentError
from core.store.sql import merges as sql

log = logging.getLogger(__name__)


def transcript_path(call_id: str) -> str:
    return f"/calls/{call_id}/transcript-merged"


@dataclasses.dataclass(frozen=True, slots=True)
class MergePolicy:
    recording_wait_sec: float = 15.0
    attempts: int = 5
    backoff_base_sec: float = 2.0
    lease_sec: float = 300.0
    poll_sec: float = 0.5


def _language(row: asyncpg.Record) -> str:
    """The language Deepgram should hear: the one spoken, else the one asked, else any."""
    outcome = row["outcome"] if isinstance(row["outcome"], dict) else {}
    language = outcome.get("language") or row["language"]
    return "multi" if not language or language == "auto" else str(language)


class _Retry(Exception):
    """This try failed; `final` when another cannot help (fall back to the live lines)."""

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final


class MergeWorker:
    """Claims and runs merge jobs; one per core process, any number of replicas."""

    def __init__(
        self, service: CallService, deepgram: DeepgramBatch | None, policy: MergePolicy
    ) -> None:
        self._service = service
        self._pool = service.pool
        self._deepgram = deepgram
        self._policy = policy
        self._wakeup = asyncio.Event()

    def poke(self) -> None:
        """Look for work now (a recording arrived in this process)."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
            except (OSError, asyncpg.PostgresError) as err:
                log.warning("merge worker: database trouble", extra={"error": str(err)})
            except Exception:  # a bug must not stop every later merge; the lease retries it
                log.exception("merge worker: unexpected error")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._policy.poll_sec):
                    await self._wakeup.wait()

    async def run_once(self) -> bool:
        """Claim and run one due job; False when none is due."""
        claimed = await self._pool.fetchrow(sql.CLAIM, self._policy.lease_sec)
        if claimed is None:
            return False
        call_id, attempt = claimed["call_id"], claimed["attempts"]
        try:
            await self._merge(call_id, attempt)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._pool.execute(sql.RELEASE, call_id))
            raise
        return True

    async def _merge(self, call_id: str, attempt: int) -> None:
        row = await self._pool.fetchrow(sql.INPUT, call_id, self._policy.recording_wait_sec)
        if row is None:  # the call is gone (cascade removes the job too)
            return
        if row["recording_sid"] is None and row["may_wait"] and self._deepgram is not None:
            parked = await self._pool.fetchval(
                sql.WAIT_FOR_RECORDING, call_id, row["recording_due"]
            )
            if parked is None:  # the recording arrived meanwhile: run again at once
                await self._pool.execute(sql.RELEASE, call_id)
                self.poke()
            return
        try:
            merged = await self._from_recording(row)
        except _Retry as retry:
            if retry.final or attempt >= self._policy.attempts:
                (log.info if self._deepgram is None else log.warning)(
                    "merge falls back to the live lines",
                    extra={"call_id": call_id, "reason": retry.reason, "attempts": attempt},
                )
                fallback = transcripts.merge_live(row["transcript_full"], row["duration_sec"])
                await self._finish(call_id, {**fallback, "degraded_reason": retry.reason})
                return
            delay = self._policy.backoff_base_sec * 2 ** (attempt - 1)
            log.info(
                "merge retried later",
                extra={"call_id": call_id, "reason": retry.reason, "in_sec": delay},
            )
            await self._pool.execute(sql.RETRY_LATER, call_id, delay, retry.reason)
            return
        await self._finish(call_id, merged)

    async def _from_recording(self, row: asyncpg.Record) -> dict[str, Any]:
        if self._deepgram is None:
            raise _Retry("no Deepgram key configured", final=True)
        if row["call_sid"] is None:
            raise _Retry("the call was never dialed", final=True)
        try:
            async with self._service.open_recording(row["call_id"]) as media:
                if media is None:
                    raise _Retry("the carrier has no recording yet")
                audio = b"".join([chunk async for chunk in media.chunks])
        except CallagentError as err:
            raise _Retry(err.message) from None
        try:
            words = await self._deepgram.transcribe(audio, _language(row))
        except TranscriptionError as err:
            raise _Retry(err.message, final=not err.retryable) from None
        duration = row["recording_duration"]
        # Deepgram bills the audio it transcribed, whether or not the words align.
        billed = duration if duration is not None else row["duration_sec"]
        if billed:
            await usage.record_batch(self._pool, row["call_id"], billed)
        merged = transcript_merge.merge_recording(words, row["transcript_full"], duration)
        if merged is None:
            raise _Retry("the recording could not be aligned with the live lines", final=True)
        return merged

    async def _finish(self, call_id: str, merged: dict[str, Any]) -> None:
        reason = merged.get("degraded_reason")
        async with self._pool.acquire() as conn, conn.transaction():
            # The call row first, then the job: the order every writer of a call takes (a
            # recording callback stores the recording, then wakes the job). The other way
            # round, each waits on the other and PostgreSQL aborts one (deadlock detected).
            await conn.execute(sql.LOCK_CALL, call_id)
            if await conn.fetchval(sql.FINISH, call_id, reason) is None:
                return  # another claimer finished it first
            await conn.execute(sql.STORE, call_id, merged)
            await events.append(
                conn,
                call_id,
                "transcript_ready",
                {
                    "transcript_url": transcript_path(call_id),
                    "degraded": bool(merged.get("degraded")),
                    "turns": len(merged.get("turns", [])),
                },
                locked=True,
            )
        log.info(
            "merged transcript ready",
            extra={"call_id": call_id, "degraded": bool(merged.get("degraded"))},
        )
