"""A round-robin TCP load balancer for tests: one public port in front of several backends.

Twilio reaches media through one public URL, so spreading calls over media replicas needs
what a cloud load balancer does: each new connection goes to the next backend, bytes are
copied both ways untouched (so websockets pass), and a backend that refuses is skipped.
It runs its own event loop in a thread so synchronous tests can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Iterator


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


class Balancer:
    """Listens on 127.0.0.1:`port`; connection n goes to backends[n % len] (or the next up)."""

    def __init__(self, port: int, backends: list[int]) -> None:
        self.port = port
        self.backends = backends
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _first_choice(self, request_line: bytes) -> int:
        """The turn that picks the backend for a connection opening with `request_line`."""
        return next(self._turn)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = await reader.readline()  # passed on first, untouched
        start = self._first_choice(request_line)
        for i in range(len(self.backends)):
            port = self.backends[(start + i) % len(self.backends)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # a dead replica: the next one takes it, as a health-checked LB would
            up_writer.write(request_line)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()  # open connections die with the thread's loop

    @contextlib.contextmanager
    def running(self) -> Iterator[Balancer]:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("balancer did not start")
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


class StreamTurnBalancer(Balancer):
    """Media Streams upgrades (`GET /twilio/stream`) take their own turns, whatever else
    connects in between (webhooks): a call's n-th stream then lands on a known backend, as
    a real balancer may happen to place it."""

    def __init__(self, port: int, backends: list[int]) -> None:
        super().__init__(port, backends)
        self._stream_turn = itertools.count()

    def _first_choice(self, request_line: bytes) -> int:
        if request_line.startswith(b"GET /twilio/stream"):
            return next(self._stream_turn)
        return super()._first_choice(request_line)
