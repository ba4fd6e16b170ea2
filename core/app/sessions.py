"""Live media sessions and the commands core sends them (answers, hang-ups).

A call's media session (one gRPC stream from the media pod that owns the call) is
attached to exactly one core replica. Commands are published with NOTIFY
`call_commands` carrying only ids; every replica's hub listens, and the one holding
the session pushes the command down it. So an answer submitted through any replica
reaches the call, and PostgreSQL stays the only shared thing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import asyncpg
import orjson

from common.aio import cancel_and_wait
from core.store import database
from core.store.database import Conn
from core.store.sql import signals as sql

log = logging.getLogger(__name__)

CHANNEL = "call_commands"


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    call_id: str
    kind: str  # answer | hang_up
    request_id: str = ""
    reason: str = ""


async def publish(conn: Conn | asyncpg.Pool[Any], command: Command) -> None:
    """Send a command to whichever replica holds the call's session (after commit)."""
    await conn.execute(sql.NOTIFY, CHANNEL, orjson.dumps(dataclasses.asdict(command)).decode())


class SessionHub:
    """This replica's attached sessions: call_id → queue of commands for it."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._queues: dict[str, asyncio.Queue[Command]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="session-hub")
        async with asyncio.timeout(10):
            await self._ready.wait()

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)

    def attach(self, call_id: str) -> asyncio.Queue[Command]:
        queue: asyncio.Queue[Command] = asyncio.Queue()
        self._queues[call_id] = queue  # a re-attach (new stream after DTMF) replaces the old
        return queue

    def detach(self, call_id: str, queue: asyncio.Queue[Command]) -> bool:
        """Forget the session; False if a newer one for the call replaced it."""
        if self._queues.get(call_id) is queue:
            del self._queues[call_id]
            return True
        return False

    def holds(self, call_id: str) -> bool:
        return call_id in self._queues

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        try:
            command = Command(**orjson.loads(str(payload)))
        except (orjson.JSONDecodeError, TypeError):
            log.error("malformed call command ignored")
            return
        queue = self._queues.get(command.call_id)
        if queue is not None:
            queue.put_nowait(command)

    async def _listen_forever(self) -> None:
        await database.listen_forever(
            self._dsn, CHANNEL, self._notified, on_connected=self._ready.set
        )
