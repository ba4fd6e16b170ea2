"""`callagent call | calls | bookings` as real processes against the real stack on loopback:
gateway (uvicorn) → core (gRPC) → PostgreSQL, with the media side played through a real
`MediaSessionService.Session` stream. The client sees only the public REST/SSE API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from callagent.v1 import media_pb2

from cli.api import Api
from core import main as server
from core.app import api_keys, events
from core.app.call_status import Change
from gateway.app import create_app
from tests.conftest import (
    eventually,
    make_gateway_settings,
    make_settings,
    new_customer,
    serve_asgi,
)
from tests.fakes.telephony import FakeTelephony
from tests.integration.test_ask_user import ask, session
from tests.integration.test_cli import CLI, tree_env

FAST = {"events_close_after_outcome_sec": 0.3, "sse_heartbeat_sec": 0.2}
BRIEF = "Table for 2 tomorrow at 19:00 under Anna"


@pytest.fixture
def settings() -> Any:
    return make_settings(**FAST)


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"sse_heartbeat_sec": FAST["sse_heartbeat_sec"]}


class Cli:
    """One `callagent` process; stdout is read line by line as the test goes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, url: str, key: str | None, *args: str, stdin: int | None = None) -> Cli:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLAGENT_")}
        env["CALLAGENT_API_URL"] = url
        if key is not None:
            env["CALLAGENT_API_KEY"] = key
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            *args,
            env=tree_env(env),
            stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def until(self, wanted: Callable[[str], bool], limit: float = 15) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(limit):
            while True:
                raw = await self.proc.stdout.readline()
                assert raw, f"stdout closed before the line; got {self.lines}"
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if wanted(line):
                    return line

    async def __aenter__(self) -> Cli:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:  # a failed test: don't leave it following the call
            self.proc.kill()
            await self.proc.wait()

    async def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        await self.proc.stdin.drain()

    async def finish(self, limit: float = 20) -> tuple[int, str]:
        async with asyncio.timeout(limit):
            out, err = await self.proc.communicate()
        self.lines += out.decode().splitlines()
        return self.proc.returncode or 0, err.decode()


async def run(url: str, key: str | None, *args: str) -> tuple[int, str, str]:
    cli = await Cli.start(url, key, *args)
    code, err = await cli.finish()
    return code, "\n".join(cli.lines), err


def is_event(kind: str) -> Callable[[str], bool]:
    return lambda line: json.loads(line)["event"] == kind


async def outcome_recorded(core: server.Core, call_id: str) -> None:
    async def recorded() -> bool:
        sql = "SELECT outcome_type FROM calls WHERE call_id = $1"
        return bool(await core.pool.fetchval(sql, call_id))

    await eventually(recorded)


def booked() -> dict[str, Any]:
    return {
        "outcome": media_pb2.CallOutcome(
            outcome="booked",
            summary=BRIEF,
            date_time="2030-12-01T19:00:00",
            guests=2,
            holder_name="Anna",
            venue_name="Luigi's",
        )
    }


def said(speaker: str, text: str, final: bool = True, source: str = "gemini") -> dict[str, Any]:
    line = media_pb2.TranscriptLine(speaker=speaker, text=text, final=final, source=source)
    return {"transcript": line}


async def test_json_follows_a_call_and_a_script_answers_by_post(
    core: server.Core, gateway_url: str, customer: api_keys.CreatedKey
) -> None:
    cli = await Cli.start(
        gateway_url,
        customer.api_key,
        "call",
        "+15550100",
        BRIEF,
        "--json",
        "--kind",
        "restaurant_booking",
        "--slot",
        "guests=2",
        "--slot",
        "name=Anna",
    )
    started = json.loads(await cli.until(is_event("started")))
    call_id = started["data"]["call"]["call_id"]
    async with session(core, call_id) as media:
        task = (await media.next()).task
        assert (task.ask_user_mode, task.kind) == ("stream", "restaurant_booking")
        assert dict(task.parsed_slots) == {"guests": 2, "name": "Anna"}
        await core.calls.transition(call_id, "in_progress")
        media.send(**said("agent", "Hello, I'd like a table for two."))
        media.send(**said("callee", "Luigi's", final=False, source="supervisor_stt"))  # not kept
        media.send(**said("callee", "Luigi's, only 20:30 is free.", source="supervisor_stt"))
        media.send(decision=media_pb2.SupervisorDecision(kind="hold", reason="r", action="wait"))
        media.send(**ask("r1", "They only have 20:30 — take it?"))
        asked = json.loads(await cli.until(is_event("ask_user")))
        assert asked["data"]["options"] == ["yes", "no"]
        async with httpx.AsyncClient(base_url=gateway_url) as http:
            reply = await http.post(
                f"/calls/{call_id}/answer",
                json={"answer": "yes", "request_id": asked["data"]["request_id"]},
                headers={"X-API-Key": customer.api_key},
            )
        assert reply.json() == {"delivered": True}
        assert (await media.next()).answer.answer == "yes"
        media.send(**said("callee", "Booked for 20:30, see you!", source="supervisor_stt"))
        media.send(**booked())
        await outcome_recorded(core, call_id)
        await core.calls.transition(call_id, "completed", Change(duration_sec=30))
        code, err = await cli.finish()
    assert code == 0, err
    lines = [json.loads(line) for line in cli.lines]
    assert lines[0]["event"] == "started" and lines[-1]["event"] == "final"
    stream = lines[1:-1]
    ids = [e["id"] for e in stream]
    assert ids == sorted(set(ids)) and all(isinstance(i, int) for i in ids)
    assert [e["event"] for e in stream if e["event"] != "status"] == [
        "transcript",
        "transcript",
        "supervisor_decision",
        "ask_user",
        "answer",
        "transcript",
        "outcome",
        "transcript_ready",  # the stream stays open for the merged transcript
    ]
    assert [e["data"]["status"] for e in stream if e["event"] == "status"][-2:] == [
        "in_progress",
        "completed",
    ]
    answer = next(e["data"] for e in stream if e["event"] == "answer")
    assert (answer["request_id"], answer["delivered"], answer["via"]) == ("r1", True, "api")
    final = lines[-1]["data"]
    assert (final["call"]["status"], final["call"]["outcome_type"]) == ("completed", "booked")
    assert final["call"]["duration_sec"] == 30
    booking = final["booking"]
    assert booking["call_id"] == call_id and booking["status"] == "active"
    assert (booking["guests"], booking["booking_holder_name"]) == (2, "Anna")

    code, out, err = await run(gateway_url, customer.api_key, "calls", "--json")
    assert code == 0, err
    assert [json.loads(line)["call_id"] for line in out.splitlines()] == [call_id]
    code, out, err = await run(gateway_url, customer.api_key, "bookings", "--status", "active")
    assert code == 0, err
    assert "Anna" in out and "Luigi's" in out and "1 bookings" in out


async def test_terminal_answers_typed_lines_and_prints_the_card(
    core: server.Core, gateway_url: str, customer: api_keys.CreatedKey
) -> None:
    cli = await Cli.start(
        gateway_url,
        customer.api_key,
        "call",
        "+15550100",
        BRIEF,
        "--kind",
        "restaurant_booking",
        stdin=asyncio.subprocess.PIPE,
    )
    first = await cli.until(lambda line: line.startswith("calling "))
    call_id = first.rsplit(": ", 1)[1]
    async with session(core, call_id) as media:
        await media.next()
        await core.calls.transition(call_id, "in_progress")
        media.send(**said("agent", "Good evening, a table for two please."))
        media.send(**ask("r1", "Only 20:30 is free. Take it?"))
        await cli.until(lambda line: line.startswith("question: Only 20:30"))
        await cli.type("1\n")  # picks option 1
        got = (await media.next()).answer
        assert (got.request_id, got.answer, got.mode) == ("r1", "yes", "voice")
        await cli.until(lambda line: line.startswith("answer: answer delivered"))
        media.send(**ask("r2", "Anything they should know?"))
        await cli.until(lambda line: line.startswith("question: Anything"))
        await cli.type("/context vegetarian, no nuts\n")
        got = (await media.next()).answer
        assert (got.request_id, got.answer, got.mode) == ("r2", "vegetarian, no nuts", "context")
        media.send(**booked())
        await outcome_recorded(core, call_id)
        await core.calls.transition(call_id, "completed", Change(duration_sec=75))
        code, err = await cli.finish()
    assert code == 0, err
    out = cli.lines
    assert "agent: Good evening, a table for two please." in out
    assert "status: in_progress → completed" in out
    assert f"outcome: booked — {BRIEF}" in out
    assert "answer: answer delivered (voice, via api): yes" in out
    assert "answer: answer delivered (context, via api): vegetarian, no nuts" in out
    card = dict(line.split(": ", 1) for line in out[out.index("status: completed") :])
    assert card["outcome"] == f"booked — {BRIEF}"
    assert card["duration"] == "1m 15s" and card["charge"].startswith("$")
    assert card["booking"].startswith("active (")
    assert (card["guests"], card["name"], card["venue"]) == ("2", "Anna", "Luigi's")
    assert card["date"] == "2030-12-01 19:00"


async def test_api_errors_exit_non_zero_with_the_message(
    gateway_url: str, customer: api_keys.CreatedKey
) -> None:
    code, out, err = await run(gateway_url, customer.api_key, "call", "12345", "hi")
    assert code == 1 and out == ""
    assert "400 INVALID_ARGUMENT_PHONE" in err and "E.164" in err
    code, _, err = await run(
        gateway_url, customer.api_key, "call", "+15550100", "hi", "--kind", "x"
    )
    assert code == 1 and "422 VALIDATION_ERROR: kind: Input should be" in err
    code, _, err = await run(gateway_url, "ck_not_a_real_key_000000000000", "calls")
    assert code == 1 and "401" in err
    code, _, err = await run(gateway_url, None, "bookings")
    assert code == 2 and "CALLAGENT_API_KEY" in err
    code, _, err = await run(gateway_url, customer.api_key, "bookings", "--status", "maybe")
    assert code == 1 and "400" in err and "active" in err


async def test_queued_call_is_followed_from_its_position(db_dsn: str) -> None:
    settings = make_settings(call_queue_enabled=True, drainer_poll_sec=0.05, **FAST)
    core = await server.start(settings, dsn=db_dsn, port=0, telephony=FakeTelephony())
    gw = make_gateway_settings(core.port, sse_heartbeat_sec=FAST["sse_heartbeat_sec"])
    try:
        async with serve_asgi(create_app(gw)) as url:
            customer = await new_customer(core.pool)
            async with await Cli.start(
                url, customer.api_key, "call", "+15550100", BRIEF, "--json"
            ) as cli:
                started = json.loads(await cli.until(is_event("started")))["data"]
                assert started["status"] == "queued" and started["position"] == 0
                call_id = started["call_id"]
                await cli.until(lambda line: json.loads(line)["data"].get("status") == "dialing")
                await core.calls.transition(call_id, "no_answer")
                code, err = await cli.finish()
        assert code == 0, err
        final = json.loads(cli.lines[-1])["data"]
        assert final == {"call": final["call"], "booking": None}
        assert final["call"]["status"] == "no_answer"
    finally:
        await core.stop(grace=0)


class CuttableProxy:
    """A loopback TCP forwarder whose open connections can be cut, like a dropped network."""

    def __init__(self, target: str) -> None:
        parsed = urllib.parse.urlsplit(target)
        self._target = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        self.cut()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self._target)
        self._writers += [down_w, up_w]
        for pair in ((down_r, up_w), (up_r, down_w)):
            pump = asyncio.create_task(self._pump(*pair))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
        dst.transport.abort()


async def test_event_stream_resumes_after_a_drop_without_loss_or_repeats(
    core: server.Core, gateway_url: str, customer: api_keys.CreatedKey
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        reply = await http.post(
            "/calls",
            json={"target_phone": "+15550100", "brief": BRIEF},
            headers={"X-API-Key": customer.api_key},
        )
    call_id = reply.json()["call"]["call_id"]

    async def transcript(text: str) -> None:
        async with core.pool.acquire() as conn, conn.transaction():
            line = {"speaker": "callee", "text": text, "final": True}
            await events.append(conn, call_id, "transcript", line)

    seen: list[dict[str, Any]] = []
    async with (
        CuttableProxy(gateway_url) as proxy,
        httpx.AsyncClient(base_url=proxy.url, headers={"X-API-Key": customer.api_key}) as http,
    ):
        api = Api(http)

        async def follow() -> None:
            async for event in api.events(call_id):
                seen.append(event)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(follow())
            for n in range(3):
                await transcript(f"before {n}")

            async def got(count: int) -> bool:
                return len([e for e in seen if e["event"] == "transcript"]) >= count

            await eventually(lambda: got(3))
            proxy.cut()
            for n in range(3):
                await transcript(f"after {n}")  # written while the client is disconnected
            await core.calls.transition(call_id, "completed", Change(duration_sec=5))
    assert api.reconnects >= 1
    stored = await core.pool.fetch(
        "SELECT event_id FROM call_events WHERE call_id = $1 ORDER BY event_id", call_id
    )
    assert [e["id"] for e in seen] == [r["event_id"] for r in stored]
    assert [e["data"]["text"] for e in seen if e["event"] == "transcript"] == [
        "before 0",
        "before 1",
        "before 2",
        "after 0",
        "after 1",
        "after 2",
    ]
    assert seen[-1]["event"] == "outcome"
