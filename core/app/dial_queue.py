"""The dial queue and its single drainer.

Queued calls wait in `dial_queue` (FIFO by `seq`). Exactly one drainer dials, whatever
the number of core replicas: the leader is whoever holds a session-level PostgreSQL
advisory lock on a dedicated connection (if that connection dies, PostgreSQL frees the
lock and another replica takes over). The leader claims entries with
`FOR UPDATE … SKIP LOCKED`, skipping customers at their concurrency cap without
blocking anyone behind them, and dials at DIAL_CPS with a token bucket.

A claimed entry is `warming` under a lease. When a lease expires (its dialer died),
recovery looks at the call: already dialed → done; never sent to the carrier → back
to the queue; sent but no answer from the carrier recorded → failed, never redialed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from core.app.api_keys import new_id
from core.app.calls import CallService, Change
from core.domain import call_states as st
from core.domain.errors import CallagentError
from core.store import database
from core.store.database import Conn

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x6469616C  # "dial"
CHANNEL = "dial_queue"
OPEN_STATES = ("pending", "warming")


async def add(conn: Conn, call_id: str, customer_id: str) -> tuple[str, int]:
    """Append a call to the queue; return (queue_id, position), 0 being the front."""
    queue_id = new_id("q")
    seq = await conn.fetchval(
        "INSERT INTO dial_queue (queue_id, call_id, customer_id) VALUES ($1, $2, $3) RETURNING seq",
        queue_id,
        call_id,
        customer_id,
    )
    ahead = await conn.fetchval(
        "SELECT count(*) FROM dial_queue WHERE state = ANY($1::text[]) AND seq < $2",
        list(OPEN_STATES),
        seq,
    )
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return queue_id, int(ahead)


_CLAIM = """
WITH next AS (
    SELECT q.queue_id FROM dial_queue q JOIN customers c USING (customer_id)
    WHERE q.state = 'pending'
      AND (SELECT count(*) FROM calls a
           WHERE a.customer_id = q.customer_id AND a.status = ANY($3::text[]))
          < c.max_concurrent_calls
    ORDER BY q.seq
    FOR UPDATE OF q SKIP LOCKED
    LIMIT 1
)
UPDATE dial_queue d SET state = 'warming', lease_until = now() + make_interval(secs => $1),
       claimed_by = $2
FROM next WHERE d.queue_id = next.queue_id
RETURNING d.queue_id, d.call_id
"""


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
    """Runs on every replica; dials only while it holds the leader lock."""

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
                conn = await database.connect(self._dsn)
                # Polling is the point: the lock frees when the leader's session ends.
                while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY):  # noqa: ASYNC110
                    await asyncio.sleep(self._idle)
                await conn.add_listener(CHANNEL, self._notified)
                self.is_leader = True
                log.info("drainer is leader", extra={"pod": self._pod})
                await self._lead(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("drainer lost its database connection", extra={"error": str(err)})
            except Exception:
                log.exception("drainer failed; it restarts after a pause")
            finally:
                self.is_leader = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(self._idle)

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _lead(self, lock_conn: asyncpg.Connection[Any]) -> None:
        bucket = TokenBucket(self._cps)
        async with asyncio.TaskGroup() as dials:
            while True:
                await lock_conn.execute("SELECT 1")  # still leader? raises once the lock is gone
                await self.recover_expired()
                await bucket.take()
                claimed = await self._claim()
                if claimed is None:
                    bucket.refund()
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._idle):
                            await self._wake.wait()
                    continue
                dials.create_task(self._dial(*claimed))

    async def _claim(self) -> tuple[str, str] | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_CLAIM, self._lease, self._pod, list(st.IN_FLIGHT))
            if row is None:
                return None
            try:
                await self._calls_transition(conn, row["call_id"], st.SCHEDULED)
            except CallagentError:
                # Cancelled (or otherwise moved on) while queued: nothing to dial.
                await conn.execute(
                    "UPDATE dial_queue SET state = 'done' WHERE queue_id = $1", row["queue_id"]
                )
                return None
            return row["queue_id"], row["call_id"]

    async def _calls_transition(self, conn: Conn, call_id: str, target: str) -> None:
        from core.app.calls import transition_in

        await transition_in(conn, call_id, target, Change(), self._calls.policy)

    async def _dial(self, queue_id: str, call_id: str) -> None:
        try:
            await self._calls.dial(call_id)
            self.dialed += 1
        except CallagentError as err:
            log.warning("queued dial failed", extra={"call_id": call_id, "reason": err.reason})
        except Exception:
            # The call keeps dial_started_at without a sid: the reconciler fails it later,
            # which is safe; dialing it again might place a second call.
            log.exception("queued dial crashed", extra={"call_id": call_id})
        finally:
            await self._pool.execute(
                "UPDATE dial_queue SET state = 'done' WHERE queue_id = $1", queue_id
            )

    async def recover_expired(self) -> int:
        """Resolve `warming` entries whose lease ran out; return how many were resolved."""
        resolved = 0
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT q.queue_id, q.call_id, c.status, c.call_sid, c.dial_started_at
                   FROM dial_queue q JOIN calls c USING (call_id)
                   WHERE q.state = 'warming' AND q.lease_until < now()
                   FOR UPDATE OF q SKIP LOCKED"""
            )
            for row in rows:
                resolved += 1
                state = "done"
                if row["status"] == st.SCHEDULED and row["call_sid"] is None:
                    if row["dial_started_at"] is None:
                        await self._calls_transition(conn, row["call_id"], st.QUEUED)
                        state = "pending"
                    else:
                        await conn.execute(
                            "UPDATE calls SET outcome_type = 'failed', outcome_summary = $2 "
                            "WHERE call_id = $1",
                            row["call_id"],
                            "the dialer stopped mid-dial; not redialed to avoid calling twice",
                        )
                        await self._calls_transition(conn, row["call_id"], st.FAILED)
                log.warning(
                    "recovered an expired dial lease",
                    extra={"call_id": row["call_id"], "to": state},
                )
                await conn.execute(
                    "UPDATE dial_queue SET state = $2, lease_until = NULL WHERE queue_id = $1",
                    row["queue_id"],
                    state,
                )
        return resolved
