"""Serve an ASGI app on loopback for a test or a stand-in: uvicorn on 127.0.0.1, port chosen
by the OS and known before serving starts (so a public URL can be built from it)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import uvicorn
from starlette.types import ASGIApp


class _QuietServer(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM capture, which belongs to pytest here."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class LoopbackServer:
    """Serve an ASGI app on 127.0.0.1 with an OS-chosen port, as an async context manager.

    `websockets=True` also serves the app's websocket routes (uvicorn's sans-io
    implementation), e.g. a stand-in for media's `/twilio/stream`.
    """

    def __init__(self, app: ASGIApp, port: int = 0, *, websockets: bool = False) -> None:
        self._app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this; without it small responses wait on delayed ACKs.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="websockets-sansio" if websockets else "none",
        )
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopbackServer:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="loopback")
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()
