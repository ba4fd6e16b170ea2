"""Durable call events and their fan-out to live subscribers on every replica.

`append()` writes a row to `call_events` and NOTIFYs `call_events` with
"<call_id>:<event_id>" — ids only; the table is the truth. It runs while the call's
row is locked, so a call's event ids are committed in id order and a reader that
has seen id N never later finds a smaller id appear (no gaps for `after_event_id`).

`EventBroker` (one per core process) LISTENs on its own connection. For each call
with subscribers it fetches the new rows once per notification and pushes them to
every subscriber's queue; a subscriber registers before it backfills and drops ids it
already has, so the switch from backfill to live tail has no gap and no duplicate.
If the LISTEN connection drops, the broker reconnects and catches up from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import asyncpg
import orjson

from common.aio import cancel_and_wait
from core.store import database
from core.store.database import Conn
from core.store.sql import events as sql

log = logging.getLogger(__name__)

CHANNEL = "call_events"
TYPES = (
    "status",
    "transcript",
    "ask_user",
    "answer",
    "supervisor_decision",
    "outcome",
    "recording_ready",
    "transcript_ready",
    "signal",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    event_id: int
    call_id: str
    type: str
    payload: dict[str, Any]
    created_at: dt.datetime
    data_json: bytes  # payload + call_id + created_at, encoded once for every subscriber


def _event(row: asyncpg.Record) -> Event:
    data = {**row["payload"], "call_id": row["call_id"], "created_at": row["created_at"]}
    return Event(
        row["event_id"],
        row["call_id"],
        row["type"],
        row["payload"],
        row["created_at"],
        orjson.dumps(data),
    )


async def append(
    conn: Conn, call_id: str, type: str, payload: dict[str, Any], *, locked: bool = False
) -> int:
    """Append one event inside the caller's transaction; return its id.

    Pass locked=True only when the caller already holds the call row `FOR UPDATE`.
    """
    if type not in TYPES:
        raise ValueError(f"unknown event type {type!r}")
    if not locked:
        await conn.execute(sql.LOCK_CALL, call_id)
    event_id = await conn.fetchval(
        sql.APPEND,
        call_id,
        type,
        payload,
        CHANNEL,
    )
    return int(event_id)


async def read_after(
    conn: Conn | asyncpg.Pool[Any], call_id: str, after: int, limit: int = 1000
) -> list[Event]:
    rows = await conn.fetch(
        sql.READ_AFTER,
        call_id,
        after,
        limit,
    )
    return [_event(r) for r in rows]


async def outcome_seen(pool: asyncpg.Pool[Any], call_id: str, after: int) -> bool:
    """True if a reader resuming after event `after` already has the call's outcome
    (it will never see one again, so its stream must close on its own)."""
    if after <= 0:
        return False
    return bool(await pool.fetchval(sql.OUTCOME_AT_OR_BEFORE, call_id, after))


class _Topic:
    def __init__(self, last: int) -> None:
        self.last = last
        self.queues: set[asyncio.Queue[Event]] = set()
        self.dirty = asyncio.Event()


class EventBroker:
    """Per-process fan-out of committed events to in-process subscribers."""

    def __init__(self, dsn: str, pool: asyncpg.Pool[Any], *, safety_poll_sec: float = 5.0):
        self._dsn = dsn
        self._pool = pool
        self._topics: dict[str, _Topic] = {}
        self._poll = safety_poll_sec
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="event-broker")
        async with asyncio.timeout(10):
            await self._connected.wait()

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)

    @property
    def subscriber_count(self) -> int:
        return sum(len(t.queues) for t in self._topics.values())

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        call_id, _, _ = str(payload).rpartition(":")
        topic = self._topics.get(call_id)
        if topic is not None:
            topic.dirty.set()

    async def _listen_forever(self) -> None:
        await database.listen_forever(
            self._dsn,
            CHANNEL,
            self._notified,
            on_connected=self._on_connected,
            tick_sec=self._poll,
            on_tick=self._mark_all_dirty,
        )

    def _on_connected(self) -> None:
        self._connected.set()
        self._mark_all_dirty()  # catch up on whatever was missed while disconnected

    def _mark_all_dirty(self) -> None:
        for topic in self._topics.values():
            topic.dirty.set()

    async def _pump(self, call_id: str, topic: _Topic) -> None:
        """Fetch new rows for one call whenever notified; fan them out."""
        while topic.queues:
            await topic.dirty.wait()
            topic.dirty.clear()
            try:
                fresh = await read_after(self._pool, call_id, topic.last)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("event fetch failed; retrying", extra={"call_id": call_id})
                await asyncio.sleep(0.5)
                topic.dirty.set()
                continue
            if fresh:
                topic.last = fresh[-1].event_id
                if len(fresh) == 1000:
                    topic.dirty.set()
            for queue in list(topic.queues):
                for event in fresh:
                    queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self, call_id: str) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue receiving every event committed for call_id from now on (maybe a few
        earlier ones too: callers drop ids they already have)."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        topic = self._topics.get(call_id)
        pump: asyncio.Task[None] | None = None
        if topic is None:
            last = await self._pool.fetchval(sql.LAST_ID, call_id)
            topic = self._topics.setdefault(call_id, _Topic(int(last)))
        topic.queues.add(queue)
        if len(topic.queues) == 1:
            pump = asyncio.create_task(self._pump(call_id, topic), name=f"events-{call_id}")
            topic.dirty.set()
        try:
            yield queue
        finally:
            topic.queues.discard(queue)
            if not topic.queues:
                self._topics.pop(call_id, None)
                topic.dirty.set()  # lets the pump see it has no subscribers and exit
            if pump is not None and not topic.queues:
                await cancel_and_wait(pump)


async def follow(
    broker: EventBroker, pool: asyncpg.Pool[Any], call_id: str, after: int
) -> AsyncGenerator[Event, None]:
    """Backfill events after `after`, then tail live ones: each exactly once, in order."""
    async with broker.subscribe(call_id) as queue:
        last = after
        while True:
            batch = await read_after(pool, call_id, last)
            for event in batch:
                last = event.event_id
                yield event
            if len(batch) < 1000:
                break
        while True:
            event = await queue.get()
            if event.event_id <= last:
                continue
            last = event.event_id
            yield event
