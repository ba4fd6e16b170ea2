"""`make run`'s supervisor with real child processes (tiny Python programs, no database):
a dead child comes back and the others keep their pids, a crash-looping one is given up on
while the rest keep running, one that fails before it ever served stops everything, a child
that ends with the stop (Ctrl-C reaches the whole process group) is not taken for a crash,
and nothing outlives `run()`. The whole stack under it: tests/e2e/test_make_run.py."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import signal
import sys

import psutil
import pytest

from dev import probes, supervisor
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(60)
FAST = supervisor.Policy(first_delay=0.05, max_delay=0.2, stable_after=30, give_up_after=3)

# Serves a TCP port until it is stopped: a healthy child.
SERVER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
while True:
    time.sleep(3600)
"""
# Says it is ready (a file), lives half a second, then fails: a crash loop once it has served.
CRASHER = """
import pathlib, sys, time
pathlib.Path(sys.argv[1]).touch()
time.sleep(0.5)
sys.exit(2)
"""


class Lines:
    """What the supervisor printed, waitable."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    def say(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()

    async def wait_for(self, pattern: str, within: float = 20) -> re.Match[str]:
        regex = re.compile(pattern)
        async with asyncio.timeout(within):
            while True:
                for line in self.lines:
                    if found := regex.search(line):
                        return found
                self._changed.clear()
                await self._changed.wait()


def server(name: str, port: int) -> supervisor.Service:
    return supervisor.Service(
        name,
        [sys.executable, "-c", SERVER, str(port)],
        lambda: probes.tcp_open("127.0.0.1", [port]),
    )


def crasher(name: str, marker: pathlib.Path) -> supervisor.Service:
    async def ready() -> bool:
        return await asyncio.to_thread(marker.exists)

    return supervisor.Service(name, [sys.executable, "-c", CRASHER, str(marker)], ready)


def alive(pids: set[int]) -> set[int]:
    running = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
        except psutil.NoSuchProcess:
            continue
    return running


async def supervising(
    services: list[supervisor.Service], lines: Lines
) -> tuple[supervisor.Supervisor, asyncio.Event, asyncio.Task[int]]:
    """A supervisor running `services` (until its stop event is set), once all serve."""
    ready, stop = asyncio.Event(), asyncio.Event()
    sup = supervisor.Supervisor(services, os.environ, policy=FAST, say=lines.say)
    running = asyncio.create_task(sup.run(stop, ready.set))
    await asyncio.wait_for(ready.wait(), timeout=20)
    return sup, stop, running


async def test_a_killed_child_is_restarted_and_the_others_keep_running() -> None:
    lines = Lines()
    sup, stop, running = await supervising(
        [server("core", free_port()), server("gateway", free_port())], lines
    )
    before = sup.pids()
    os.kill(before["core"], signal.SIGKILL)
    await lines.wait_for(r"^core exited with -9 \(SIGKILL\); restarting in 0\.05 s$")
    await lines.wait_for(r"^core restarted \(pid \d+, restart 1\)$")
    again = await lines.wait_for(r"^core is serving again \(pid (\d+)\)$")
    after = sup.pids()
    assert int(again[1]) == after["core"] != before["core"], lines.lines
    assert after["gateway"] == before["gateway"], lines.lines
    stop.set()
    assert await running == 0
    assert not alive({*before.values(), *after.values()}), lines.lines


async def test_a_crash_looping_child_is_given_up_on_and_the_rest_keep_running(
    tmp_path: pathlib.Path,
) -> None:
    lines = Lines()
    sup, stop, running = await supervising(
        [crasher("media", tmp_path / "media-ready"), server("gateway", free_port())], lines
    )
    gateway = sup.pids()["gateway"]
    await lines.wait_for(r"^media exited with 2; restarting in 0\.05 s$")
    await lines.wait_for(r"^media exited with 2; restarting in 0\.1 s$")
    await lines.wait_for(
        r"^media exited with 2; it failed 3 times in a row within 30 s of starting: "
        r"giving up on it \(the rest keep running\)$"
    )
    assert sup.pids() == {"gateway": gateway}, lines.lines
    assert not running.done()
    stop.set()
    assert await running == 0
    assert not alive({gateway})


async def test_a_child_that_fails_before_it_ever_served_stops_everything() -> None:
    lines = Lines()
    ready = asyncio.Event()
    bad = supervisor.Service(
        "sim", [sys.executable, "-c", "raise SystemExit('sim: refused')"], lambda: _never()
    )
    sup = supervisor.Supervisor(
        [server("gateway", free_port()), bad], os.environ, policy=FAST, say=lines.say
    )
    code = await asyncio.wait_for(sup.run(asyncio.Event(), ready.set), timeout=20)
    assert code == 1
    assert lines.lines == ["sim exited with 1; stopping the rest"]
    assert not ready.is_set()
    assert sup.pids() == {}


async def _never() -> bool:
    return False


async def test_a_child_that_ends_with_the_stop_is_not_taken_for_a_crash() -> None:
    lines = Lines()
    sup, stop, running = await supervising(
        [server("core", free_port()), server("gateway", free_port())], lines
    )
    pids = sup.pids()
    # Ctrl-C reaches the child and the supervisor at once; the child may be seen to exit
    # first. The stop comes 50 ms after the exit here, well inside EXIT_GRACE_SEC.
    os.kill(pids["core"], signal.SIGINT)
    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await running == 0
    assert lines.lines == []
    assert not alive(set(pids.values()))
