"""Draining a media process on SIGTERM, so a deploy or a scale-down ends no call mid-sentence.

uvicorn alone, on SIGTERM, closes its listening socket and fails every open websocket with
1012 at once: every live call would drop. `DrainingServer` instead turns the first SIGTERM into
a `Drain`, and only lets uvicorn shut down once it is over:
1. `/readyz` answers 503 at once (Kubernetes takes the pod out of the Service) and streams of
   new calls are refused (1013, so Twilio's `<Connect>` ends); the listening socket stays
   open, so health probes and the re-attach of a live call's stream after DTMF still work;
2. live calls go on until they end or `MEDIA_DRAIN_SEC` has passed;
3. each call still live is asked to wrap up (the model says goodbye and reports its outcome),
   bounded by `GOODBYE_S`; then whatever is left is ended now: the outcome core gets is
   `SHUT_DOWN` (failed, saying why), and the carrier leg is hung up;
4. uvicorn's own shutdown follows (the lifespan cancels anything still running).
So the process exits within `MEDIA_DRAIN_SEC` + `GOODBYE_S` + `FINAL_S` of SIGTERM, which the
manifests' `terminationGracePeriodSeconds` (drain + 15, with a 5 s preStop sleep) covers.
A second SIGTERM, or Ctrl-C (SIGINT), skips the drain; so does a SIGTERM after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType

import uvicorn

from media.call import core_link
from media.twilio.stream_endpoint import BridgeRegistry

logger = logging.getLogger(__name__)

SHUT_DOWN = core_link.Outcome("failed", "The media server shut down before the call finished.")
GOODBYE_S = 6.0  # the model's goodbye, at most (and never longer than goodbye_timeout_sec)
FINAL_S = 3.0  # the hang-ups and the last reports to core


class Drain:
    """The drain of one media process; `run()` once, `draining` from its first moment."""

    def __init__(self, registry: BridgeRegistry, bound_s: float, goodbye_s: float) -> None:
        self._registry = registry
        self._bound_s = bound_s
        self._goodbye_s = min(goodbye_s, GOODBYE_S)
        self.draining = False

    async def run(self) -> None:
        """Refuse new calls, let live ones finish within the bound, then end the rest."""
        self.draining = True
        registry = self._registry
        registry.stop_accepting()
        logger.info("draining", extra={"calls": len(registry.bridges)})
        if await self._idle_within(self._bound_s):
            return
        logger.warning("drain bound reached", extra={"calls": len(registry.bridges)})
        registry.shut_down_all(SHUT_DOWN, goodbye=True)
        if await self._idle_within(self._goodbye_s):
            return
        registry.shut_down_all(SHUT_DOWN, goodbye=False)
        await self._idle_within(FINAL_S)

    async def _idle_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._registry.wait_idle()
        except TimeoutError:
            return False
        return True


class DrainingServer(uvicorn.Server):
    """uvicorn whose first SIGTERM drains the calls before the server shuts down."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._terminated = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        draining_starts = not (self._terminated or self.should_exit)  # not already stopping
        if sig == signal.SIGTERM and draining_starts and self._loop is not None:
            self._terminated = True  # a second SIGTERM falls through: stop at once
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        self._task = asyncio.create_task(self._drain_then_exit(), name="drain")

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain.run()
        finally:
            self.should_exit = True
