"""The simulated carrier: it places every call the Twilio REST face accepts and walks it
through Twilio's life cycle, sending the same signed callbacks Twilio would.

This is the minimal world: every number answers, talks for `talk_seconds` and hangs up
(a hang-up request ends it sooner). Venues, conversations and media streams build on it.
`speed` compresses time (SIM_SPEED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

from sim.twilio_rest import FakeCall, FakeTwilioRest, RecordedForm

log = logging.getLogger(__name__)


class SimCarrier:
    """Owns one task per live call; `aclose()` cancels and awaits them all."""

    def __init__(self, rest: FakeTwilioRest, *, speed: float = 1.0, talk_seconds: float = 5.0):
        self._rest = rest
        self._speed = speed
        self._talk = talk_seconds
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._hung_up: dict[str, asyncio.Event] = {}
        rest.on_create = self._created
        rest.on_update = self._updated

    def _created(self, call: FakeCall) -> None:
        assert call.sid is not None
        self._hung_up[call.sid] = asyncio.Event()
        self._tasks[call.sid] = asyncio.create_task(self._life(call), name=f"sim-call-{call.sid}")

    def _updated(self, call: FakeCall, form: RecordedForm) -> None:
        if call.sid and form.get("Status") in ("completed", "canceled"):
            self._hung_up[call.sid].set()

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self._speed)

    async def _fire(self, call: FakeCall, status: str, duration: int | None = None) -> None:
        assert call.sid is not None
        try:
            if duration is None:
                await self._rest.fire_status(call.sid, status)
            else:
                await self._rest.fire_status(call.sid, status, CallDuration=str(duration))
        except (httpx.HTTPError, ValueError) as err:
            log.warning(
                "status callback not delivered", extra={"status": status, "error": str(err)}
            )

    async def _life(self, call: FakeCall) -> None:
        assert call.sid is not None
        hung_up = self._hung_up[call.sid]
        try:
            await self._pause(0.05)
            await self._fire(call, "initiated")
            await self._pause(0.3)
            await self._fire(call, "ringing")
            await self._pause(0.5)
            if hung_up.is_set():
                await self._fire(call, "canceled")
                return
            await self._fire(call, "in-progress")
            loop = asyncio.get_running_loop()
            answered = loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._talk / self._speed):
                    await hung_up.wait()
            duration = max(1, round((loop.time() - answered) * self._speed))
            await self._fire(call, "completed", duration)
        finally:
            self._tasks.pop(call.sid, None)
            self._hung_up.pop(call.sid, None)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
