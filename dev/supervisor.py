"""Keeps `make run`'s children running, the way a process manager does.

A child that dies after it has served is restarted with exponential backoff; one that keeps
dying soon after each start (`Policy.give_up_after` fast failures in a row) is given up on
with one clear line, and the rest keep running. A child that exits before it ever became
ready is a configuration error (a refused scenario file, a port in use): restarting would
fail the same way, so the whole stack stops with its exit status, as before supervision.
Every exit and restart is printed with the exit code or the signal.

Children stay in the supervisor's process group, so whatever the terminal sends the group
(Ctrl-C, a hang-up) or a `kill` of the group reaches them too. A Ctrl-C therefore arrives
at a child and at this supervisor at once: an exit is judged `EXIT_GRACE_SEC` later, so a
stop that came with it wins and the exit is not taken for a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

Probe = Callable[[], Awaitable[bool]]
Say = Callable[[str], None]
PROBE_EVERY_SEC = 0.2
EXIT_GRACE_SEC = 0.2
STOP_GRACE_SEC = 10.0


def _say(line: str) -> None:
    print(line, flush=True)


@dataclasses.dataclass(frozen=True)
class Policy:
    """When to restart a dead child, and when to stop trying."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    # A run shorter than this is a fast failure; a longer one resets the count.
    stable_after: float = 30.0
    give_up_after: int = 5

    def delay(self, failures: int) -> float:
        """Seconds to wait before the restart that follows the `failures`-th fast failure."""
        return min(self.max_delay, self.first_delay * 2.0 ** max(failures - 1, 0))


@dataclasses.dataclass(frozen=True)
class Service:
    """One child: its command and how to tell that it serves."""

    name: str
    argv: Sequence[str]
    ready: Probe


def exit_status(code: int) -> str:
    """`1`, or `-9 (SIGKILL)` for a child killed by a signal."""
    if code >= 0:
        return str(code)
    try:
        return f"{code} ({signal.Signals(-code).name})"
    except ValueError:
        return str(code)


@dataclasses.dataclass
class _Child:
    service: Service
    proc: asyncio.subprocess.Process | None = None
    served: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    restarts: int = 0


class Supervisor:
    """Runs the services until `stop` is set or one of them fails before it ever served."""

    def __init__(
        self,
        services: Sequence[Service],
        env: Mapping[str, str],
        policy: Policy | None = None,
        say: Say = _say,
    ) -> None:
        self._children = [_Child(service) for service in services]
        self._env = dict(env)
        self._policy = policy or Policy()
        self._say = say
        # Set once the stack is stopping (the caller's stop, then `_stop_all`).
        self._stopping = asyncio.Event()
        self._failed = asyncio.Event()

    def pids(self) -> dict[str, int]:
        """The live children's process ids, by service name."""
        return {
            c.service.name: c.proc.pid
            for c in self._children
            if c.proc is not None and c.proc.returncode is None
        }

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None]) -> int:
        """Start every child, call `on_ready` once all of them serve, and keep them running
        until `stop` is set (0) or a child fails before it ever served (1). Every child has
        ended when this returns."""
        stopped = asyncio.create_task(stop.wait())
        stopped.add_done_callback(lambda _: self._stopping.set())  # watchers see it at once
        ending = [stopped, asyncio.create_task(self._failed.wait())]
        all_served = asyncio.create_task(self._all_served())
        watchers = [
            asyncio.create_task(self._watch(child), name=f"supervise-{child.service.name}")
            for child in self._children
        ]
        try:
            done, _ = await asyncio.wait({all_served, *ending}, return_when=asyncio.FIRST_COMPLETED)
            if all_served in done and not self._failed.is_set() and not stop.is_set():
                on_ready()
                await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
            for task in (all_served, *ending):
                task.cancel()
        finally:
            await self._stop_all(watchers)
        return 1 if self._failed.is_set() else 0

    async def _all_served(self) -> None:
        for child in self._children:
            await child.served.wait()

    async def _watch(self, child: _Child) -> None:
        """Run one child until the stack stops, restarting it as the policy says."""
        name = child.service.name
        failures = 0
        while not self._stopping.is_set():
            proc = await asyncio.create_subprocess_exec(*child.service.argv, env=self._env)
            child.proc = proc
            if self._stopping.is_set():  # stopped while it was being spawned
                proc.terminate()
            started = time.monotonic()
            if child.restarts:
                self._say(f"{name} restarted (pid {proc.pid}, restart {child.restarts})")
            probing = asyncio.create_task(self._await_ready(child, proc))
            code = await proc.wait()
            probing.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=EXIT_GRACE_SEC)
            if self._stopping.is_set():
                return
            if not child.served.is_set():
                self._say(f"{name} exited with {exit_status(code)}; stopping the rest")
                self._failed.set()
                return
            failures = (
                1 if time.monotonic() - started >= self._policy.stable_after else failures + 1
            )
            if failures >= self._policy.give_up_after:
                self._say(
                    f"{name} exited with {exit_status(code)}; it failed {failures} times in a "
                    f"row within {self._policy.stable_after:g} s of starting: giving up on it "
                    "(the rest keep running)"
                )
                return
            delay = self._policy.delay(failures)
            self._say(f"{name} exited with {exit_status(code)}; restarting in {delay:g} s")
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            except TimeoutError:
                child.restarts += 1

    async def _await_ready(self, child: _Child, proc: asyncio.subprocess.Process) -> None:
        """Probe until this run of the child serves; announce a restarted one."""
        while proc.returncode is None:
            if await child.service.ready():
                if child.restarts:
                    self._say(f"{child.service.name} is serving again (pid {proc.pid})")
                child.served.set()
                return
            await asyncio.sleep(PROBE_EVERY_SEC)

    async def _stop_all(self, watchers: Sequence[asyncio.Task[None]]) -> None:
        """SIGTERM every live child, give each `STOP_GRACE_SEC`, then SIGKILL it."""
        self._stopping.set()
        for child in self._children:
            if child.proc is not None and child.proc.returncode is None:
                child.proc.terminate()
        for child, watcher in zip(self._children, watchers, strict=True):
            try:
                await asyncio.wait_for(asyncio.shield(watcher), timeout=STOP_GRACE_SEC)
            except TimeoutError:
                self._say(f"{child.service.name} did not stop in {STOP_GRACE_SEC:g} s; killing it")
                if child.proc is not None and child.proc.returncode is None:
                    child.proc.kill()
                await watcher
