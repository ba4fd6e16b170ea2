"""A core restart loses no live call: media's production `GrpcCoreLink` re-attaches the call's
session to a fresh core on the same database (real gRPC on loopback, real PostgreSQL), replays
what core had not acknowledged exactly once, and gets the commands published meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import httpx
from callagent.v1 import media_pb2, media_pb2_grpc, telephony_pb2, telephony_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core import main as server
from core.app import api_keys
from core.app.ask_user import AskUser, Channels
from core.app.provider_events import ProviderEvent, apply_provider_event
from core.domain.tasks import StartRequest
from gateway.app import create_app
from media.call import core_link
from media.server import CHANNEL_OPTIONS
from tests.conftest import (
    INTERNAL_TOKEN,
    eventually,
    free_port,
    make_gateway_settings,
    make_settings,
    new_customer,
    serve_asgi,
)
from tests.fakes.telephony import FakeTelephony
from tests.integration.test_cli import tree_env

STREAM_SID = "MZ" + "0" * 32


async def start_core(db_dsn: str, port: int = 0) -> server.Core:
    return await server.start(make_settings(), dsn=db_dsn, port=port, telephony=FakeTelephony())


async def live_call(core: server.Core, customer: api_keys.CreatedKey) -> tuple[str, str]:
    request = StartRequest("+15550100", "Table for 2 at 19:00 under Anna", ask_user_mode="stream")
    call = (await core.calls.start(customer.customer_id, request)).call
    sid = call["call_sid"]
    await apply_provider_event(
        core.calls, ProviderEvent(kind="status", call_sid=sid, status="in_progress")
    )
    return str(call["call_id"]), str(sid)


def line(text: str, at_ms: int) -> core_link.Transcript:
    return core_link.Transcript("callee", text, True, at_ms, "supervisor_stt")


async def transcript(pool: asyncpg.Pool[Any], call_id: str) -> list[str]:
    rows = await pool.fetchval("SELECT transcript_full FROM calls WHERE call_id = $1", call_id)
    return [r["text"] for r in rows or ()]


async def events(pool: asyncpg.Pool[Any], call_id: str, kind: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT payload FROM call_events WHERE call_id = $1 AND type = $2 ORDER BY event_id",
        call_id,
        kind,
    )
    return [r["payload"] for r in rows]


async def next_command(commands: AsyncIterator[core_link.CoreCommand]) -> core_link.CoreCommand:
    async with asyncio.timeout(10):
        return await anext(commands)


@contextlib.asynccontextmanager
async def media_link(port: int) -> AsyncIterator[core_link.GrpcCoreLink]:
    """Media's link over its production channel options (fast reconnect to a restarted core)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as ch:
        link = core_link.GrpcCoreLink(ch, INTERNAL_TOKEN)
        try:
            yield link
        finally:
            await link.aclose()


async def test_a_call_survives_a_core_restart(db_dsn: str, pool: asyncpg.Pool[Any]) -> None:
    first = await start_core(db_dsn)
    port = first.port
    customer = await new_customer(first.pool)
    call_id, sid = await live_call(first, customer)
    second: server.Core | None = None
    seen: list[int] = []  # event ids an SSE client got through the gateway, across the restart
    try:
        async with (
            serve_asgi(create_app(make_gateway_settings(port, sse_heartbeat_sec=0.2))) as url,
            httpx.AsyncClient(base_url=url) as http,
            media_link(port) as link,
        ):
            follower = asyncio.create_task(follow_events(http, call_id, customer.api_key, seen))
            await link.attach(call_id, sid, STREAM_SID, "media-a")
            commands = aiter(link.commands())
            link.send_transcript(line("Hello, Luigi's.", 100))
            link.ask_user(core_link.AskUser("q" * 32, "Is 20:30 fine?", 60))
            link.ask_user(core_link.AskUser("t" * 32, "Window seat?", 5))
            await eventually(lambda: _status_is(pool, "t" * 32, "pending"))

            before = [e["event_id"] for e in await all_events(pool, call_id)]
            await eventually(lambda: _caught_up(seen, before))  # the client is following
            await first.stop(grace=0)  # core goes away mid-call
            # What media says while core is down is kept, not lost.
            link.send_transcript(line("We have a table at 20:30.", 2_000))
            link.send_decision(core_link.DecisionReport("hold", "cue:one moment", "wait"))
            link.send_signal("time_offered")
            # The customer answers while no core holds the session (and no LISTEN runs):
            # core's own answer path, as another replica would run it.
            asker = AskUser(pool, Channels())
            assert await asker.submit(customer.customer_id, call_id, "yes", "q" * 32, "voice")

            second = await start_core(db_dsn, port)  # a new core on the same address
            assert await next_command(commands) == core_link.Answer("q" * 32, "yes", "voice")
            await eventually(lambda: _reattached(link))
            # The question asked before the restart still times out, on the new core.
            timed_out = await next_command(commands)
            assert timed_out == core_link.Answer("t" * 32, "", "voice", timed_out=True)

            link.send_transcript(line("Great, book it.", 5_000))
            link.send_outcome(core_link.Outcome("refused", "Fully booked tonight."))
            await link.aclose()
            # The SSE client reconnected with Last-Event-ID: every event once, in order.
            stored_ids = [e["event_id"] for e in await all_events(pool, call_id)]
            await eventually(lambda: _caught_up(seen, stored_ids))
            follower.cancel()
            assert seen == stored_ids
        # Closed: every line stored exactly once, in order, with one event each.
        texts = ["Hello, Luigi's.", "We have a table at 20:30.", "Great, book it."]
        assert await transcript(pool, call_id) == texts
        assert [e["text"] for e in await events(pool, call_id, "transcript")] == texts
        decisions = await events(pool, call_id, "supervisor_decision")
        assert [e["kind"] for e in decisions] == ["hold"]
        assert [e["name"] for e in await events(pool, call_id, "signal")] == ["time_offered"]
        assert len(await events(pool, call_id, "ask_user")) == 2
        row = await pool.fetchrow(
            "SELECT outcome_type, reservation_signals FROM calls WHERE call_id = $1", call_id
        )
        assert row["outcome_type"] == "refused"
        assert row["reservation_signals"] == ["time_offered"]
        # Both commands were taken by media, and nothing is left to send.
        states = await pool.fetch("SELECT state FROM session_commands WHERE call_id = $1", call_id)
        assert [s["state"] for s in states] == ["acknowledged", "acknowledged"]
    finally:
        if second is not None:
            await second.stop(grace=0)


async def follow_events(
    http: httpx.AsyncClient, call_id: str, api_key: str, seen: list[int]
) -> None:
    """An SSE client as a browser's EventSource runs it: on a broken or refused stream it
    waits its retry delay and reconnects with Last-Event-ID."""
    while True:
        headers = {"X-API-Key": api_key}
        if seen:
            headers["Last-Event-ID"] = str(seen[-1])
        with contextlib.suppress(httpx.HTTPError):
            async with http.stream("GET", f"/calls/{call_id}/events", headers=headers) as r:
                if r.status_code == 200:
                    async for text in r.aiter_lines():
                        if text.startswith("id: "):
                            seen.append(int(text.removeprefix("id: ")))
        await asyncio.sleep(0.2)  # EventSource's retry delay, not a synchronisation


async def all_events(pool: asyncpg.Pool[Any], call_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT event_id FROM call_events WHERE call_id = $1 ORDER BY event_id", call_id
    )


async def _caught_up(seen: list[int], stored: list[int]) -> bool:
    return len(seen) >= len(stored)


async def _status_is(pool: asyncpg.Pool[Any], request_id: str, status: str) -> bool:
    found = await pool.fetchval(
        "SELECT status FROM ask_user_requests WHERE request_id = $1", request_id
    )
    return bool(found == status)


async def _reattached(link: core_link.GrpcCoreLink) -> bool:
    return link.reattached >= 1


class RawSession:
    """Plays media's side of one Session by hand, to send chosen seqs (a replay)."""

    def __init__(self, channel: grpc.aio.Channel, call_id: str) -> None:
        self.outbox: asyncio.Queue[media_pb2.SessionRequest | None] = asyncio.Queue()
        self.outbox.put_nowait(
            media_pb2.SessionRequest(attach=media_pb2.SessionAttach(call_id=call_id, pod="m"))
        )
        stub = media_pb2_grpc.MediaSessionServiceStub(channel)
        self.call = stub.Session(self._requests(), metadata=(("x-internal-token", INTERNAL_TOKEN),))

    async def _requests(self) -> AsyncIterator[media_pb2.SessionRequest]:
        while (item := await self.outbox.get()) is not None:
            yield item

    def send(self, seq: int, **kind: Any) -> None:
        self.outbox.put_nowait(media_pb2.SessionRequest(seq=seq, **kind))

    async def responses(self) -> list[media_pb2.SessionResponse]:
        """Half-close and read everything core sends until it ends the stream."""
        self.outbox.put_nowait(None)
        async with asyncio.timeout(10):
            return [r async for r in self.call]


async def test_a_replayed_report_is_applied_once_and_acknowledged(
    core: server.Core, customer: api_keys.CreatedKey, channel: grpc.aio.Channel
) -> None:
    call_id, _ = await live_call(core, customer)
    text = media_pb2.TranscriptLine(
        speaker="agent", text="Hi!", final=True, offset_ms=10, source="gemini"
    )
    outcome = media_pb2.CallOutcome(outcome="refused", summary="Full tonight.")
    acks = []
    for _ in range(2):  # the same reports on a first session and on a re-attached one
        media = RawSession(channel, call_id)
        media.send(1, transcript=text)
        media.send(2, outcome=outcome)
        replies = await media.responses()
        assert replies[0].HasField("task") and replies[0].task.replay
        acks.append([r.ack.seq for r in replies if r.HasField("ack")])
    assert acks == [[1, 2], [1, 2]]
    assert await transcript(core.pool, call_id) == ["Hi!"]
    assert len(await events(core.pool, call_id, "transcript")) == 1
    assert await core.pool.fetchval(
        "SELECT outcome_type FROM calls WHERE call_id = $1", call_id
    ) == ("refused")


async def test_a_command_whose_wake_up_was_lost_is_still_delivered(
    core: server.Core, customer: api_keys.CreatedKey, pool: asyncpg.Pool[Any]
) -> None:
    """The replica's LISTEN connection drops; an answer published before it is back reaches
    the session all the same (the NOTIFY is lost, the command row is not)."""
    call_id, sid = await live_call(core, customer)
    async with media_link(core.port) as link:
        await link.attach(call_id, sid, STREAM_SID, "media-a")
        commands = aiter(link.commands())
        link.ask_user(core_link.AskUser("w" * 32, "Terrace?", 60))
        await eventually(lambda: _status_is(pool, "w" * 32, "pending"))
        listener = 'LISTEN "call_commands"'
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1",
            listener,
        )
        assert killed == 1
        asker = AskUser(pool, Channels())
        assert await asker.submit(None, call_id, "no", None, "context")
        assert await next_command(commands) == core_link.Answer("w" * 32, "no", "context")


async def test_an_amd_result_reaches_the_pod_that_owns_the_call(
    db_dsn: str, pool: asyncpg.Pool[Any]
) -> None:
    """The carrier's AMD callback lands on another media pod, which hands it to another core
    replica: the owning session still gets it, once."""
    owner_core = await start_core(db_dsn)
    other_core = await start_core(db_dsn)
    try:
        customer = await new_customer(pool)
        call_id, sid = await live_call(owner_core, customer)
        async with (
            media_link(owner_core.port) as link,
            grpc.aio.insecure_channel(f"127.0.0.1:{other_core.port}") as other,
        ):
            await link.attach(call_id, sid, STREAM_SID, "media-a")
            commands = aiter(link.commands())
            stub = telephony_pb2_grpc.TelephonyEventServiceStub(other)
            report = telephony_pb2.ReportTelephonyEventRequest(
                kind="amd", call_sid=sid, call_id=call_id, answered_by="machine_start"
            )
            await stub.ReportTelephonyEvent(
                report, metadata=(("x-internal-token", INTERNAL_TOKEN),), timeout=5
            )
            assert await next_command(commands) == core_link.AnsweredBy("machine_start")
    finally:
        await owner_core.stop(grace=0)
        await other_core.stop(grace=0)


async def test_an_outcome_sent_while_core_is_down_is_stored_when_media_hangs_up(
    db_dsn: str, pool: asyncpg.Pool[Any]
) -> None:
    """The call ends during the restart: media's close keeps the outcome until a core is back."""
    first = await start_core(db_dsn)
    port = first.port
    customer = await new_customer(first.pool)
    call_id, sid = await live_call(first, customer)
    second: server.Core | None = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as ch:
            link = core_link.GrpcCoreLink(ch, INTERNAL_TOKEN)
            await link.attach(call_id, sid, STREAM_SID, "media-a")
            await first.stop(grace=0)
            link.send_transcript(line("Sorry, we are full.", 900))
            link.send_outcome(core_link.Outcome("refused", "Full tonight.", refusal_reason="full"))
            closing = asyncio.create_task(link.aclose())  # the bridge hangs up now
            second = await start_core(db_dsn, port)
            await asyncio.wait_for(closing, 15)
        row = await pool.fetchrow(
            "SELECT outcome_type, transcript_full FROM calls WHERE call_id = $1", call_id
        )
        assert row["outcome_type"] == "refused"
        assert [r["text"] for r in row["transcript_full"]] == ["Sorry, we are full."]
        assert link.reattached == 1
    finally:
        if second is not None:
            await second.stop(grace=0)


@contextlib.asynccontextmanager
async def core_process(db_dsn: str, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m core.main` on `port`, serving (gRPC health) when yielded; killed after."""
    env = tree_env(
        {
            **os.environ,
            "DATABASE_URL": db_dsn,
            "CALLAGENT_GRPC_PORT": str(port),
            "INTERNAL_TOKEN": INTERNAL_TOKEN,
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": "unused",
            "TWILIO_API_BASE_URL": "http://127.0.0.1:9",  # nothing is dialled from here
            "RECONCILE_INTERVAL_SEC": "3600",
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.main",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30
            )
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_call_survives_kill_9_of_its_core(
    core: server.Core, customer: api_keys.CreatedKey, pool: asyncpg.Pool[Any], db_dsn: str
) -> None:
    """The real thing: the core process holding the session is SIGKILLed (no goodbye on the
    stream, no cleanup), another core process starts on the same address."""
    call_id, sid = await live_call(core, customer)
    port = free_port()
    async with media_link(port) as link:
        async with core_process(db_dsn, port) as doomed:
            await link.attach(call_id, sid, STREAM_SID, "media-a")
            commands = aiter(link.commands())
            link.send_transcript(line("Hello?", 100))
            link.ask_user(core_link.AskUser("k" * 32, "Is 21:00 fine?", 60))
            await eventually(lambda: _status_is(pool, "k" * 32, "pending"))
            os.kill(doomed.pid, signal.SIGKILL)
            await doomed.wait()
        link.send_transcript(line("Yes, 21:00 works.", 3_000))
        asker = AskUser(pool, Channels())
        assert await asker.submit(None, call_id, "yes", None, "voice")
        async with core_process(db_dsn, port):
            assert await next_command(commands) == core_link.Answer("k" * 32, "yes", "voice")
            link.send_outcome(core_link.Outcome("refused", "Not tonight after all."))
            await link.aclose()
    assert await transcript(pool, call_id) == ["Hello?", "Yes, 21:00 works."]
    assert len(await events(pool, call_id, "transcript")) == 2
    assert await pool.fetchval("SELECT outcome_type FROM calls WHERE call_id = $1", call_id) == (
        "refused"
    )
    assert link.reattached == 1


class CutFirstRpc:
    """A TCP relay to core that drops its first connection the moment the first RPC's
    HEADERS frame arrives (HTTP/2 frames are read one by one), as a core killed under an
    attach does: the client sees UNAVAILABLE. Later connections pass untouched."""

    PREFACE = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    HEADERS = 0x1

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.cuts = 0
        self.port = 0

    async def __aenter__(self) -> CutFirstRpc:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        down = asyncio.create_task(self._pump(up_reader, writer))
        self._tasks.add(down)
        try:
            if self.cuts == 0:
                self.cuts = 1
                up_writer.write(await reader.readexactly(self.PREFACE))
                while True:
                    head = await reader.readexactly(9)
                    if head[3] == self.HEADERS:
                        break
                    up_writer.write(head + await reader.readexactly(int.from_bytes(head[:3])))
                writer.transport.abort()
                up_writer.transport.abort()
                return
            await self._pump(reader, up_writer)
        except (OSError, asyncio.IncompleteReadError):
            pass

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()


async def test_an_attach_cut_by_a_dying_core_is_retried(db_dsn: str) -> None:
    """A call answered while its core dies: the first attach fails with UNAVAILABLE and is
    tried again (any replica; here the same one), rather than hanging the call up unheard."""
    core = await start_core(db_dsn)
    try:
        call_id, sid = await live_call(core, await new_customer(core.pool))
        async with CutFirstRpc(core.port) as relay, media_link(relay.port) as link:
            task = await link.attach(call_id, sid, STREAM_SID, "media-a")
            assert (task.call_id, relay.cuts) == (call_id, 1)
            link.send_transcript(line("Hello, Luigi's.", 100))
            await eventually(lambda: _transcript_is(core.pool, call_id, ["Hello, Luigi's."]))
        owner = "SELECT owner_pod FROM calls WHERE call_id = $1"
        assert await core.pool.fetchval(owner, call_id) == "media-a"
    finally:
        await core.stop(grace=1)


async def _transcript_is(pool: asyncpg.Pool[Any], call_id: str, lines: list[str]) -> bool:
    return await transcript(pool, call_id) == lines
