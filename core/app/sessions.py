"""Live media sessions and the commands core sends them (answers, hang-ups, AMD results).

A call's media session (one gRPC stream from the media pod that owns the call) is
attached to exactly one core replica at a time, and re-attaches to any replica when its
stream breaks (a core restart). Commands are durable rows (`session_commands`): the
session sends every open one when it attaches and again whenever it is woken, until media
acknowledges it. NOTIFY `call_commands` carrying only the call id is the wake-up, so a
NOTIFY lost while a replica's LISTEN was down (or published while no session was
attached) costs a delay, never the command: a re-connected LISTEN wakes every session here.

Reports media sends carry a per-call seq; `claim_report` in the writing transaction makes
a replayed report a no-op, so core applies each at most once.
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
from core.store.sql import session_replay as sql
from core.store.sql import signals

log = logging.getLogger(__name__)

CHANNEL = "call_commands"


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    call_id: str
    kind: str  # answer | hang_up | answered_by
    request_id: str = ""
    reason: str = ""
    answered_by: str = ""


async def publish(conn: Conn | asyncpg.Pool[Any], command: Command) -> int:
    """Queue a command for the call's media session and wake whichever replica holds it
    (inside the caller's transaction both take effect at commit). Returns its id."""
    command_id: int = await conn.fetchval(
        sql.INSERT_COMMAND,
        command.call_id,
        command.kind,
        command.request_id,
        command.reason,
        command.answered_by,
    )
    await conn.execute(signals.NOTIFY, CHANNEL, orjson.dumps({"call_id": command.call_id}).decode())
    return command_id


async def open_commands(pool: asyncpg.Pool[Any], call_id: str) -> list[tuple[int, Command]]:
    """The call's commands media has not acknowledged, oldest first."""
    rows = await pool.fetch(sql.OPEN_COMMANDS, call_id)
    return [
        (
            r["command_id"],
            Command(call_id, r["kind"], r["request_id"], r["reason"], r["answered_by"]),
        )
        for r in rows
    ]


async def mark_delivered(pool: asyncpg.Pool[Any], command_id: int) -> None:
    await pool.execute(sql.MARK_DELIVERED, command_id)


async def acknowledge(pool: asyncpg.Pool[Any], call_id: str, command_id: int) -> None:
    """Media took the command: it is not sent again."""
    await pool.execute(sql.ACKNOWLEDGE, command_id, call_id)


async def claim_report(conn: Conn, call_id: str, seq: int) -> bool:
    """True when report `seq` of the call is new (unsequenced reports, seq 0, always are);
    call inside the transaction that applies it, so the claim and the write commit together."""
    if seq <= 0:
        return True
    return await conn.fetchval(sql.CLAIM_REPORT, call_id, seq) is not None


async def prune(pool: asyncpg.Pool[Any], ended_sec: float) -> int:
    """Forget the replay log and commands of calls over for `ended_sec`; rows deleted."""
    async with pool.acquire() as conn, conn.transaction():
        reports = await conn.execute(sql.PRUNE_REPORTS, ended_sec)
        commands = await conn.execute(sql.PRUNE_COMMANDS, ended_sec)
    return int(reports.split()[-1]) + int(commands.split()[-1])


async def report_applied(pool: asyncpg.Pool[Any], call_id: str, seq: int) -> bool:
    """A cheap look before slow work (the outcome's model check) on a likely replay."""
    return seq > 0 and await pool.fetchval(sql.REPORT_APPLIED, call_id, seq) is not None


class SessionHub:
    """This replica's attached sessions: call_id → the wake-up of the session holding it."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._wakes: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="session-hub")
        async with asyncio.timeout(10):
            await self._ready.wait()

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)

    def attach(self, call_id: str) -> asyncio.Event:
        """Register a session; the event is set when it may have commands to send."""
        wake = asyncio.Event()
        wake.set()  # whatever was queued while no session was attached
        self._wakes[call_id] = wake  # a re-attach (new stream) replaces the old
        return wake

    def detach(self, call_id: str, wake: asyncio.Event) -> bool:
        """Forget the session; False if a newer one for the call replaced it."""
        if self._wakes.get(call_id) is wake:
            del self._wakes[call_id]
            return True
        return False

    def holds(self, call_id: str) -> bool:
        return call_id in self._wakes

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        try:
            call_id = str(orjson.loads(str(payload))["call_id"])
        except (orjson.JSONDecodeError, TypeError, KeyError):
            log.error("malformed call command wake-up ignored")
            return
        wake = self._wakes.get(call_id)
        if wake is not None:
            wake.set()

    def _connected(self) -> None:
        # Wake-ups published while LISTEN was down are lost: every session looks again.
        for wake in self._wakes.values():
            wake.set()
        self._ready.set()

    async def _listen_forever(self) -> None:
        await database.listen_forever(
            self._dsn, CHANNEL, self._notified, on_connected=self._connected
        )
