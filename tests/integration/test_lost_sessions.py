"""A media pod that dies mid-call: core notices its session ended, and unless media
re-attaches or the call ends within the grace, hangs the leg up through Twilio's REST API (the sim's
`FakeTwilioRest`, driven by the production `TwilioTelephony`) and fails the call without
charging it. Sessions are opened by media's production `GrpcCoreLink`; the first test holds
it in a separate process and kills that process with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from core import main as server
from core.app import reconciler
from core.app.call_status import Change
from core.app.provider_events import ProviderEvent, apply_provider_event
from core.domain import call_states as st
from core.domain.tasks import StartRequest
from media.call import core_link
from sim.twilio_rest import FakeTwilioRest
from telephony.twilio_rest import TwilioTelephony
from tests.conftest import INTERNAL_TOKEN, eventually, make_settings, new_customer

ACCOUNT = "AC" + "1414" * 8
TOKEN = "lost-sessions-twilio-token"
GRACE = 1.0
ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)

# A stand-in media pod: attaches a call's session with the production link, then waits.
HOLDER = """
import asyncio, sys
import grpc
from media.call import core_link

async def main() -> None:
    target, token, call_id, call_sid = sys.argv[1:5]
    async with grpc.aio.insecure_channel(target) as channel:
        link = core_link.GrpcCoreLink(channel, token)
        await link.attach(call_id, call_sid, "MZ" + "0" * 32, "media-pod-doomed")
        print("attached", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
async def rest() -> AsyncIterator[FakeTwilioRest]:
    async with FakeTwilioRest(ACCOUNT, TOKEN) as fake:
        yield fake


@pytest.fixture
async def core(db_dsn: str, rest: FakeTwilioRest) -> AsyncIterator[server.Core]:
    phone = TwilioTelephony(ACCOUNT, TOKEN, "+15005550006", "http://127.0.0.1:9", rest.base_url)
    settings = make_settings(media_session_grace_sec=GRACE)
    running = await server.start(settings, dsn=db_dsn, port=0, telephony=phone)
    yield running
    await running.stop(grace=1)
    await phone.aclose()


async def answered_call(core: server.Core) -> tuple[str, str]:
    """A call dialed through the carrier's REST API and answered; its id and SID."""
    customer = await new_customer(core.pool)
    started = await core.calls.start(customer.customer_id, StartRequest("+15550100", "hello"))
    call_id, call_sid = started.call["call_id"], started.call["call_sid"]
    await core.calls.transition(call_id, st.IN_PROGRESS, Change(call_sid=call_sid))
    return call_id, call_sid


def hang_ups(rest: FakeTwilioRest, call_sid: str) -> list[str | None]:
    return [u.form.get("Status") for u in rest.updates if u.call_sid == call_sid]


async def call_row(core: server.Core, call_id: str) -> Any:
    return await core.pool.fetchrow(
        """SELECT c.status, c.outcome_type, c.outcome_summary, c.outcome_charge_cents,
                  r.status AS hold, r.captured_amount
           FROM calls c JOIN credit_reservations r ON r.call_id = c.call_id
           WHERE c.call_id = $1""",
        call_id,
    )


async def is_failed(core: server.Core, call_id: str) -> bool:
    return bool((await call_row(core, call_id))["status"] == st.FAILED)


async def test_a_killed_media_pods_call_is_hung_up_and_failed_without_charge(
    core: server.Core, rest: FakeTwilioRest
) -> None:
    call_id, call_sid = await answered_call(core)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"}
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        f"127.0.0.1:{core.port}",
        INTERNAL_TOKEN,
        call_id,
        call_sid,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert holder.stdout is not None
        async with asyncio.timeout(30):
            assert await holder.stdout.readline() == b"attached\n"
        owner = await core.pool.fetchval("SELECT owner_pod FROM calls WHERE call_id = $1", call_id)
        assert owner == "media-pod-doomed"
        assert hang_ups(rest, call_sid) == []
    finally:
        holder.send_signal(signal.SIGKILL)
        await holder.wait()

    await eventually(lambda: is_failed(core, call_id), limit=GRACE + 8)
    row = await call_row(core, call_id)
    assert row["outcome_type"] == "failed"
    assert "media session on pod media-pod-doomed broke" in row["outcome_summary"]
    assert row["outcome_charge_cents"] == 0
    assert (row["hold"], row["captured_amount"]) == ("released", 0)
    assert hang_ups(rest, call_sid) == ["completed"]
    events = await core.pool.fetch(
        "SELECT type, payload FROM call_events WHERE call_id = $1 ORDER BY event_id", call_id
    )
    assert [(e["type"], e["payload"]["status"]) for e in events[-2:]] == [
        ("status", "failed"),
        ("outcome", "failed"),
    ]
    # Settled once: the reconciler's sweep finds nothing left to do.
    assert await reconciler.reconcile_once(core.calls, stuck_dial_sec=600, stuck_call_sec=600) == 0


class Partition:
    """A TCP relay to core that can go silent without closing anything: what a media pod
    whose node or network vanished looks like from core (no FIN, no RST, just no bytes)."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> Partition:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    async def cut(self) -> None:
        """Stop relaying; both sockets stay open."""
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()


async def test_a_media_pod_gone_silent_is_found_by_keepalive_and_hung_up(
    db_dsn: str, rest: FakeTwilioRest
) -> None:
    phone = TwilioTelephony(ACCOUNT, TOKEN, "+15005550006", "http://127.0.0.1:9", rest.base_url)
    settings = make_settings(
        media_session_grace_sec=GRACE, grpc_keepalive_sec=1.0, grpc_keepalive_timeout_sec=1.0
    )
    running = await server.start(settings, dsn=db_dsn, port=0, telephony=phone)
    try:
        call_id, call_sid = await answered_call(running)
        async with Partition(running.port) as partition:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{partition.port}")
            link = core_link.GrpcCoreLink(channel, INTERNAL_TOKEN)
            await link.attach(call_id, call_sid, "MZ" + "4" * 32, "media-pod-far")
            await partition.cut()
            await eventually(lambda: is_failed(running, call_id), limit=15)
            await link.aclose()
            await channel.close()
        assert hang_ups(rest, call_sid) == ["completed"]
        assert "media-pod-far" in (await call_row(running, call_id))["outcome_summary"]
    finally:
        await running.stop(grace=1)
        await phone.aclose()


async def test_a_session_re_attached_within_the_grace_is_not_hung_up(
    core: server.Core, rest: FakeTwilioRest
) -> None:
    call_id, call_sid = await answered_call(core)
    target = f"127.0.0.1:{core.port}"
    first = grpc.aio.insecure_channel(target)
    link = core_link.GrpcCoreLink(first, INTERNAL_TOKEN)
    await link.attach(call_id, call_sid, "MZ" + "1" * 32, "media-pod-a")
    await first.close()  # the stream breaks without media closing its side
    await link.aclose()

    async def marked() -> bool:
        lost = "SELECT session_lost_at IS NOT NULL FROM calls WHERE call_id = $1"
        return bool(await core.pool.fetchval(lost, call_id))

    async def watching(count: int) -> bool:
        return core.lost_sessions is not None and core.lost_sessions.watching == count

    await eventually(marked, limit=5)
    async with grpc.aio.insecure_channel(target) as second:
        again = core_link.GrpcCoreLink(second, INTERNAL_TOKEN)
        await again.attach(call_id, call_sid, "MZ" + "2" * 32, "media-pod-a")
        assert not await marked()
        # The grace runs out (the watch ends) and a reconciler pass runs: nothing to settle.
        await eventually(lambda: watching(0), limit=GRACE + 5)
        await reconciler.reconcile_once(
            core.calls, stuck_dial_sec=600, stuck_call_sec=600, lost=core.lost_sessions
        )
        assert (await call_row(core, call_id))["status"] == st.IN_PROGRESS
        assert hang_ups(rest, call_sid) == []
        again.send_outcome(core_link.Outcome("failed", "Nobody spoke on the line."))
        await again.aclose()  # media ended the call (and hung up itself)
    # The carrier's final status follows within the grace: nothing left to do.
    await core.calls.transition(call_id, st.COMPLETED, Change(duration_sec=20.0))
    await eventually(lambda: watching(0), limit=GRACE + 5)
    assert not await marked()
    assert hang_ups(rest, call_sid) == []
    row = await call_row(core, call_id)
    assert (row["status"], row["hold"]) == (st.COMPLETED, "captured")


async def test_a_lost_session_is_settled_by_the_reconciler_if_its_replica_died(
    core: server.Core, rest: FakeTwilioRest
) -> None:
    """The mark is durable: a replica that did not see the break settles it on its pass."""
    call_id, call_sid = await answered_call(core)
    await core.pool.execute(
        """UPDATE calls SET owner_pod = 'media-pod-b',
               session_lost_at = now() - make_interval(secs => $2)
           WHERE call_id = $1""",
        call_id,
        GRACE + 1,
    )
    fixed = await reconciler.reconcile_once(
        core.calls, stuck_dial_sec=600, stuck_call_sec=600, lost=core.lost_sessions
    )
    assert fixed == 1
    row = await call_row(core, call_id)
    assert (row["status"], row["hold"], row["outcome_charge_cents"]) == ("failed", "released", 0)
    assert hang_ups(rest, call_sid) == ["completed"]
    assert (
        await reconciler.reconcile_once(
            core.calls, stuck_dial_sec=600, stuck_call_sec=600, lost=core.lost_sessions
        )
        == 0
    )


async def test_a_lost_session_with_a_reported_outcome_is_only_hung_up(
    core: server.Core, rest: FakeTwilioRest
) -> None:
    """Media died between end_call and its hang-up: the outcome stands, the leg is ended,
    and the carrier's final status settles the call as usual."""
    call_id, call_sid = await answered_call(core)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
        link = core_link.GrpcCoreLink(channel, INTERNAL_TOKEN)
        await link.attach(call_id, call_sid, "MZ" + "3" * 32, "media-pod-c")
        link.send_outcome(core_link.Outcome("failed", "Nobody spoke on the line."))

        async def reported() -> bool:
            return bool(
                await core.pool.fetchval(
                    "SELECT outcome IS NOT NULL FROM calls WHERE call_id = $1", call_id
                )
            )

        await eventually(reported, limit=5)
    await link.aclose()  # the channel closed first: the session broke, not closed
    await eventually(lambda: _hung_up(rest, call_sid), limit=GRACE + 8)
    assert (await call_row(core, call_id))["status"] == st.IN_PROGRESS


async def _hung_up(rest: FakeTwilioRest, call_sid: str) -> bool:
    return hang_ups(rest, call_sid) == ["completed"]


async def carrier_completed(core: server.Core, call_id: str, call_sid: str) -> bool:
    """Twilio's final status callback, as media forwards it to core."""
    event = ProviderEvent("status", call_sid, call_id, status=st.COMPLETED, duration_sec=42.0)
    return await apply_provider_event(core.calls, event)


async def broken_session(core: server.Core, call_id: str, call_sid: str, pod: str) -> None:
    """Media attaches, then its stream breaks without media closing its side."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{core.port}")
    link = core_link.GrpcCoreLink(channel, INTERNAL_TOKEN)
    await link.attach(call_id, call_sid, "MZ" + "5" * 32, pod)
    await channel.close()
    await link.aclose()

    async def marked() -> bool:
        lost = "SELECT session_lost_at IS NOT NULL FROM calls WHERE call_id = $1"
        return bool(await core.pool.fetchval(lost, call_id))

    await eventually(marked, limit=5)


async def test_a_dead_pods_call_the_carrier_completes_first_is_failed_not_charged(
    core: server.Core, rest: FakeTwilioRest
) -> None:
    """Twilio ends the call as soon as the dead pod's stream closes, and its completed
    callback comes well inside the grace: it waits for an outcome that never comes."""
    call_id, call_sid = await answered_call(core)
    await broken_session(core, call_id, call_sid, "media-pod-killed")
    assert await carrier_completed(core, call_id, call_sid)
    assert (await call_row(core, call_id))["status"] == st.IN_PROGRESS

    await eventually(lambda: is_failed(core, call_id), limit=GRACE + 8)
    row = await call_row(core, call_id)
    assert (row["hold"], row["captured_amount"], row["outcome_charge_cents"]) == ("released", 0, 0)
    assert "media-pod-killed" in row["outcome_summary"]
    assert "the carrier had ended the call" in row["outcome_summary"]
    assert hang_ups(rest, call_sid) == []  # the leg was over: nothing to hang up
    times = await core.pool.fetchrow(
        "SELECT ended_at, carrier_ended_at, duration_sec FROM calls WHERE call_id = $1", call_id
    )
    assert times["ended_at"] == times["carrier_ended_at"]
    assert times["duration_sec"] == 42.0
    assert not await carrier_completed(core, call_id, call_sid)  # a repeat is stale


async def test_an_outcome_replayed_after_a_core_restart_completes_a_call_the_carrier_ended(
    core: server.Core, rest: FakeTwilioRest
) -> None:
    """The callee hung up while media was re-attaching to another core: the carrier's
    completed arrives first, then media's replayed outcome, and the call is charged."""
    call_id, call_sid = await answered_call(core)
    await broken_session(core, call_id, call_sid, "media-pod-a")
    assert await carrier_completed(core, call_id, call_sid)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
        link = core_link.GrpcCoreLink(channel, INTERNAL_TOKEN)
        await link.attach(call_id, call_sid, "MZ" + "6" * 32, "media-pod-a")
        link.send_outcome(core_link.Outcome("failed", "The other side hung up."))
        await link.aclose()

    async def completed() -> bool:
        return bool((await call_row(core, call_id))["status"] == st.COMPLETED)

    await eventually(completed, limit=5)
    row = await call_row(core, call_id)
    assert row["hold"] == "captured"
    assert row["outcome_charge_cents"] == row["captured_amount"] > 0  # 42 s at the rate
    assert row["outcome_summary"] == "The other side hung up."
    assert hang_ups(rest, call_sid) == []
    await eventually(lambda: _not_watching(core), limit=GRACE + 5)
    assert (await call_row(core, call_id))["status"] == st.COMPLETED
    events = await core.pool.fetch(
        "SELECT type, payload FROM call_events WHERE call_id = $1 ORDER BY event_id", call_id
    )
    assert [e["type"] for e in events].count("outcome") == 1


async def test_a_completed_callback_racing_the_outcome_on_a_live_session_waits_for_it(
    core: server.Core,
) -> None:
    call_id, call_sid = await answered_call(core)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
        link = core_link.GrpcCoreLink(channel, INTERNAL_TOKEN)
        await link.attach(call_id, call_sid, "MZ" + "7" * 32, "media-pod-a")
        assert await carrier_completed(core, call_id, call_sid)
        assert (await call_row(core, call_id))["status"] == st.IN_PROGRESS
        link.send_outcome(core_link.Outcome("booked", "Table for 2 at 19:00 under Anna."))
        await link.aclose()
    row = await call_row(core, call_id)
    assert (row["status"], row["hold"]) == (st.COMPLETED, "captured")


async def _not_watching(core: server.Core) -> bool:
    return core.lost_sessions is not None and core.lost_sessions.watching == 0


async def test_a_session_for_another_sid_changes_nothing_on_the_call(core: server.Core) -> None:
    """A stream on a made-up SID reaches core as an attach media then refuses: it takes
    neither the call's owner nor its attach number, and its end marks nothing lost."""
    call_id, call_sid = await answered_call(core)
    facts = "SELECT owner_pod, media_session_seq, session_lost_at FROM calls WHERE call_id = $1"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
        link = core_link.GrpcCoreLink(channel, INTERNAL_TOKEN)
        await link.attach(call_id, call_sid, "MZ" + "8" * 32, "media-pod-owner")
        before = await core.pool.fetchrow(facts, call_id)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as other:
            impostor = core_link.GrpcCoreLink(other, INTERNAL_TOKEN)
            task = await impostor.attach(call_id, "CA" + "f" * 32, "MZ" + "9" * 32, "media-pod-x")
            assert task.call_sid == call_sid  # so media refuses the stream
            await impostor.aclose()
        await eventually(lambda: _not_watching(core), limit=5)
        assert await core.pool.fetchrow(facts, call_id) == before
        assert before["owner_pod"] == "media-pod-owner" and before["session_lost_at"] is None
        await link.aclose()
