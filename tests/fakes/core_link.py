"""In-memory stand-ins for media's link to core: a `CoreLinkFactory` that records every report.

The bridge integration tests and the media benchmark run the production media app with these
in place of `media.call.core_link.GrpcCoreLink`, so they need no core process: a test reads
what the call reported and pushes answers and hang-ups as core would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from media.call.core_link import (
    Answer,
    AskUser,
    CallTask,
    CoreCommand,
    CoreLinkError,
    DecisionReport,
    HangUp,
    Outcome,
    Transcript,
    Usage,
)


class InMemoryCoreLink:
    """A `CoreLink` in memory: records every report, lets a test push answers and hang-ups."""

    def __init__(self, owner: InMemoryCore) -> None:
        self._owner = owner
        self._commands: asyncio.Queue[CoreCommand | None] = asyncio.Queue()
        self.attaches: list[tuple[str, str, str, str]] = []
        self.transcripts: list[Transcript] = []
        self.ask_requests: list[AskUser] = []
        self.decisions: list[DecisionReport] = []
        self.signals: list[str] = []
        self.outcomes: list[Outcome] = []
        self.usage: list[Usage] = []
        self.closed = False

    @property
    def call_id(self) -> str:
        return self.attaches[0][0] if self.attaches else ""

    async def attach(self, call_id: str, call_sid: str, stream_sid: str, pod: str) -> CallTask:
        await self._owner.attach_gate.wait()
        if call_id in self._owner.refused:
            raise CoreLinkError("core does not know this call")
        self.attaches.append((call_id, call_sid, stream_sid, pod))
        self._owner.links[call_id] = self
        self._owner.changed()
        return self._owner.task_for(call_id)

    def send_transcript(self, line: Transcript) -> None:
        self._record(self.transcripts, line)

    def ask_user(self, request: AskUser) -> None:
        self._record(self.ask_requests, request)

    def send_decision(self, decision: DecisionReport) -> None:
        self._record(self.decisions, decision)

    def send_signal(self, name: str) -> None:
        self._record(self.signals, name)

    def send_outcome(self, outcome: Outcome) -> None:
        self._record(self.outcomes, outcome)

    def send_usage(self, usage: Usage) -> None:
        self._record(self.usage, usage)

    async def commands(self) -> AsyncIterator[CoreCommand]:
        while (command := await self._commands.get()) is not None:
            yield command
        self._commands.put_nowait(None)

    async def aclose(self) -> None:
        self.closed = True
        self._commands.put_nowait(None)
        self._owner.changed()

    # ---- test controls --------------------------------------------------------------------

    def answer(
        self,
        request_id: str,
        answer: str,
        mode: Literal["voice", "context"] = "voice",
        *,
        timed_out: bool = False,
    ) -> None:
        self._commands.put_nowait(Answer(request_id, answer, mode, timed_out))

    def hang_up(self, reason: str = "cancelled") -> None:
        self._commands.put_nowait(HangUp(reason))

    def _record(self, into: list[Any], item: object) -> None:
        if not self.closed:
            into.append(item)
            self._owner.changed()


class InMemoryCore:
    """A `CoreLinkFactory` that hands out `InMemoryCoreLink`s and finds them by call id."""

    def __init__(self, task_for: Callable[[str], CallTask] | None = None) -> None:
        self.task_for = task_for or (lambda call_id: CallTask(call_id, f"Task of {call_id}"))
        self.links: dict[str, InMemoryCoreLink] = {}
        self.refused: set[str] = set()
        self.attach_gate = asyncio.Event()  # clear it to hold every attach until set again
        self.attach_gate.set()
        self._changed = asyncio.Event()

    def __call__(self) -> InMemoryCoreLink:
        return InMemoryCoreLink(self)

    def changed(self) -> None:
        self._changed.set()

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until `condition()` holds; re-checked after every report."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def link(self, call_id: str, timeout_s: float = 10.0) -> InMemoryCoreLink:
        await self.wait_until(lambda: call_id in self.links, timeout_s)
        return self.links[call_id]
