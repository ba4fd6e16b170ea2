"""The single drainer that dials queued calls, at DIAL_CPS, on whichever replica leads.

Exactly one drainer dials, whatever the number of core replicas: the leader is whoever
holds a session-level PostgreSQL advisory lock on a dedicated connection (if that
connection dies, PostgreSQL frees the lock and another replica takes over). The leader
recovers expired leases, claims the next entry (`core.app.dial_queue.claim`) and dials
it, paced by a token bucket. While a maintenance window is active nothing is claimed:
queued calls keep their place and are dialed after the window. `drain_once` runs one
such round in the open, so tests and operators can step the queue instead of waiting
for the background loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from common import logs, metrics, tracing
from core.app import dial_queue, maintenance
from core.app.calls import CallService
from core.domain.errors import CallagentError
from core.store import database
from core.store.sql import signals as sql

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x6469616C  # "dial"


class TokenBucket:
    """Spaces events 1/rate apart on the monotonic clock; idle time does not bank bursts.

    The clock and sleep are parameters so the pacing rule is tested without real time.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = clock()

    async def take(self) -> None:
        now = self._clock()
        if self._next < now:
            self._next = now
        delay = self._next - now
        self._next += self._interval
        if delay > 0:
            await self._sleep(delay)

    def refund(self) -> None:
        self._next -= self._interval


class Drainer:
    """Runs on every replica; dials in the background only while it holds the leader lock."""

    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool[Any],
        calls: CallService,
        *,
        cps: float,
        lease_sec: float,
        pod_name: str,
        idle_poll_sec: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._pool = pool
        self._calls = calls
        self._cps = cps
        self._lease = lease_sec
        self._pod = pod_name
        self._idle = idle_poll_sec
        self._wake = asyncio.Event()
        self.is_leader = False
        self.dialed = 0

    async def run(self) -> None:
        """Forever: become leader when possible, lead until the lock connection fails."""
        while True:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await database.connect(self._dsn, f"callagent drainer {self._pod}")
                # Polling is the point: the lock frees when the leader's session ends.
                while not await conn.fetchval(sql.TRY_LEADER_LOCK, LEADER_LOCK_KEY):  # noqa: ASYNC110
                    await asyncio.sleep(self._idle)
                await conn.add_listener(dial_queue.CHANNEL, self._notified)
                self.is_leader = True
                log.info("drainer is leader", extra={"pod": self._pod})
                await self._lead(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("drainer lost its database connection", extra={"error": str(err)})
            except Exception:
                log.exception("drainer failed; it restarts after a pause")
            finally:
                self.is_leader = False
                metrics.DIAL_QUEUE_DEPTH.set(0)  # the next leader reports it
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(self._idle)

    async def drain_once(self) -> str | None:
        """One round, awaited to the end: recover expired leases, claim the next dialable
        entry and dial it. Returns the call id it dialed, None when nothing was dialable
        (also during a maintenance window).

        Safe beside a running leader: claims are row-locked, so no entry is taken twice.
        """
        claimed = await self._next()
        if claimed is None:
            return None
        await self._dial(*claimed)
        return claimed[1]

    async def recover_expired(self) -> int:
        """Resolve `warming` entries whose lease ran out; return how many were resolved."""
        return await dial_queue.recover_expired(
            self._pool, rate_cents_per_minute=self._calls.policy.rate_cents_per_minute
        )

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _next(self) -> tuple[str, str] | None:
        await self.recover_expired()
        return await self._claim()

    async def _claim(self) -> tuple[str, str] | None:
        if (await maintenance.get(self._pool)).active:
            # A window refuses new calls; the queued ones wait in place (credits held)
            # and are dialed once it is cleared, rather than dialed into it.
            return None
        return await dial_queue.claim(
            self._pool,
            lease_sec=self._lease,
            pod=self._pod,
            rate_cents_per_minute=self._calls.policy.rate_cents_per_minute,
        )

    async def _lead(self, lock_conn: asyncpg.Connection[Any]) -> None:
        bucket = TokenBucket(self._cps)
        async with asyncio.TaskGroup() as dials:
            while True:
                await lock_conn.execute(sql.PING)  # still leader? raises once the lock is gone
                await self.recover_expired()
                await bucket.take()
                claimed = await self._claim()
                metrics.DIAL_QUEUE_DEPTH.set(await dial_queue.pending(self._pool))
                if claimed is None:
                    bucket.refund()
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._idle):
                            await self._wake.wait()
                    continue
                dials.create_task(self._dial(*claimed))

    async def _dial(self, queue_id: str, call_id: str) -> None:
        # No request is behind a queued dial: its own span starts the call's trace, which
        # media's call span joins through the TwiML.
        with (
            logs.bound(call_id=call_id),
            tracing.tracer().start_as_current_span(
                "core dial", attributes={"callagent.process": "core", "callagent.call_id": call_id}
            ),
        ):
            try:
                await self._calls.dial(call_id)
                self.dialed += 1
            except CallagentError as err:
                log.warning("queued dial failed", extra={"reason": err.reason})
            except Exception:
                # The call keeps dial_started_at without a sid: the reconciler fails it later,
                # which is safe; dialing it again might place a second call.
                log.exception("queued dial crashed")
            finally:
                await dial_queue.mark_done(self._pool, queue_id)
