"""How a call ends: one path, whatever the cause, so the order of effects is always the same.

First the outcome goes to core (at most once per call: the agent's end_call, or the bridge's
fallback for a timeout, a voicemail or a lost model session). Then, for an ending with a
goodbye, the wait: until the model is quiet and Twilio has echoed the mark behind its last
words, i.e. the callee heard the whole goodbye, bounded by `goodbye_timeout_s`. Then the hang-up
through the telephony port, and finally `over` is set, which stops the call's task group.

An ending without a goodbye (core's hang-up, the callee gone, a voicemail hang-up, a lost
model) does not wait, and cuts short a goodbye already being waited for; the reverse never
happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from media.call import core_link
from media.call.playout import Playout
from telephony import port as telephony

logger = logging.getLogger(__name__)

# The outcomes the bridge reports itself when a supervisor rule or the stream ends the call.
VOICEMAIL_MESSAGE_LEFT = core_link.Outcome(
    "needs_follow_up", "Reached voicemail and left a message.", ending="voicemail"
)
MACHINE_NO_MESSAGE = core_link.Outcome(
    "failed", "An answering machine answered; no message.", ending="voicemail"
)
GAVE_UP_ON_HOLD = core_link.Outcome("needs_follow_up", "Gave up on hold.", ending="hold")
AGENT_REPEATING = core_link.Outcome(
    "needs_follow_up", "The agent kept repeating itself.", ending="agent_repeating"
)
STREAM_NOT_RESUMED = core_link.Outcome("failed", "The media stream did not resume after DTMF.")

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None] | None"]


class CallEnding:
    """The ending of one call; `end()` may be called any number of times, from anywhere."""

    GOODBYE_SETTLE_S = 0.4  # model audio may start this long after end_call's tool response

    def __init__(
        self,
        phone: telephony.Telephony,
        call_sid: str,
        playout: Playout,
        model_quiet: asyncio.Event,
        *,
        goodbye_timeout_s: float,
        log_extra: dict[str, str],
    ) -> None:
        self._phone = phone
        self._call_sid = call_sid
        self._playout = playout
        self._model_quiet = model_quiet
        self._goodbye_timeout_s = goodbye_timeout_s
        self._log = log_extra
        self._task: asyncio.Task[None] | None = None
        self._graceful = False
        self._outcome_sent = False
        self.link: core_link.CoreLink | None = None
        self.spawn: Spawn | None = None  # starts a task in the call's group, once it runs
        self.over = asyncio.Event()

    @property
    def started(self) -> bool:
        return self._task is not None or self.over.is_set()

    def end(
        self,
        outcome: core_link.Outcome | None,
        *,
        goodbye: bool,
        reason: str,
        hang_up: bool = True,
    ) -> None:
        if self._task is not None:
            if goodbye or not self._graceful:
                return  # already ending, at least as fast
            self._task.cancel()  # nobody left to say goodbye to: stop waiting
        self.report(outcome)
        logger.info("call ending: %s", reason, extra=self._log)
        self._graceful = goodbye
        task = self.spawn(self._finish(goodbye, hang_up)) if self.spawn is not None else None
        if task is None:
            self.over.set()  # the call's stages are not running (yet): nothing to wait for
        else:
            self._task = task

    def report(self, outcome: core_link.Outcome | None) -> None:
        """Send `outcome` to core unless one was sent already."""
        if outcome is not None and not self._outcome_sent and self.link is not None:
            self._outcome_sent = True
            self.link.send_outcome(outcome)

    async def hang_up(self) -> None:
        try:
            await self._phone.hang_up(self._call_sid)
        except telephony.TelephonyError as exc:
            logger.warning("hang-up failed: %s", exc.message, extra=self._log)

    async def _finish(self, goodbye: bool, hang_up: bool) -> None:
        if goodbye:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._goodbye_timeout_s):
                    await self._goodbye_played()
        if hang_up:
            await self.hang_up()
        self.over.set()

    async def _goodbye_played(self) -> None:
        while True:
            await self._model_quiet.wait()
            await self._playout.wait_drained()
            await asyncio.sleep(self.GOODBYE_SETTLE_S)
            if self._model_quiet.is_set() and self._playout.drained:
                return
