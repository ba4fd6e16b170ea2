"""A loopback HTTPS endpoint playing a customer's ask_user webhook.

It serves TLS with a certificate (for 127.0.0.1 and localhost unless told otherwise)
from its own `trustme` CA
(`ssl_context` is a client context that trusts it), checks every request's
`Callagent-Signature` with the shared secret through `core.adapters.webhook_delivery.verify`, and
records what arrived. Each request consumes the next scripted step (answer 500 N times,
hang past the client's timeout, answer synchronously, answer 400, redirect); when the
script is empty it answers 202 with no body, and a bad signature always gets 401.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import pathlib
import socket
import ssl
import tempfile
import time
from typing import Any

import orjson
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from core.adapters import webhook_delivery

SECRET = "whsec_loopback_test_secret_0123456789"


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One scripted reaction: wait `hang_sec` (0 = answer at once), then answer."""

    status: int = 202
    json: dict[str, Any] | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    hang_sec: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as received, with the verdict on its signature."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def payload(self) -> Any:
        return orjson.loads(self.body)


class _QuietServer(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM capture, which belongs to pytest here."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class HttpsLoopbackServer:
    """Serve an ASGI app over TLS on 127.0.0.1 with an OS-chosen port."""

    def __init__(self, app: ASGIApp, certfile: pathlib.Path, keyfile: pathlib.Path) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="critical",
            access_log=False,
            lifespan="off",
            ws="none",
            ssl_certfile=str(certfile),
            ssl_keyfile=str(keyfile),
            timeout_graceful_shutdown=1,
        )
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HttpsLoopbackServer:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="https")
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


class FakeWebhookReceiver:
    """A customer's webhook on https://127.0.0.1:<port>/hook. Use as `async with`.

    `requests` lists every request in arrival order; `script` queues reactions.
    """

    def __init__(
        self, secret: str = SECRET, *, hostnames: tuple[str, ...] = ("127.0.0.1", "localhost")
    ) -> None:
        self.secret = secret
        self.ca = trustme.CA()
        self.requests: list[ReceivedRequest] = []
        self._steps: collections.deque[Step] = collections.deque()
        self._release = asyncio.Event()
        self._dir = tempfile.TemporaryDirectory(prefix="webhook-tls-")
        cert = self.ca.issue_cert(*hostnames)
        certfile = pathlib.Path(self._dir.name, "cert.pem")
        keyfile = pathlib.Path(self._dir.name, "key.pem")
        cert.cert_chain_pems[0].write_to_path(str(certfile))
        cert.private_key_pem.write_to_path(str(keyfile))
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST", "GET"])])
        self._server = HttpsLoopbackServer(app, certfile, keyfile)
        self.port = self._server.port
        self.base_url = f"https://127.0.0.1:{self.port}"
        self.url = f"{self.base_url}/hook"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this receiver's CA (and nothing else)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        return context

    async def __aenter__(self) -> FakeWebhookReceiver:
        await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._release.set()  # frees handlers still hanging, so shutdown does not wait
        try:
            await self._server.__aexit__(*exc_info)
        finally:
            self._dir.cleanup()

    # -- script -----------------------------------------------------------------------

    def script(self, *steps: Step) -> None:
        self._steps.extend(steps)

    def fail(self, times: int, status: int = 500) -> None:
        self.script(*[Step(status=status) for _ in range(times)])

    def hang(self, times: int, seconds: float = 30.0) -> None:
        self.script(*[Step(hang_sec=seconds) for _ in range(times)])

    def answer(self, text: str, mode: str | None = None) -> None:
        body: dict[str, Any] = {"answer": text}
        if mode is not None:
            body["mode"] = mode
        self.script(Step(status=200, json=body))

    def reject(self, status: int = 400) -> None:
        self.script(Step(status=status, json={"error": "rejected"}))

    def redirect(self, location: str, status: int = 302) -> None:
        self.script(Step(status=status, headers={"Location": location}))

    # -- wire -------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        header = request.headers.get(webhook_delivery.SIGNATURE_HEADER, "")
        ok = webhook_delivery.verify(self.secret, header, body, now=time.time())
        self.requests.append(
            ReceivedRequest(request.url.path, dict(request.headers), body, signature_ok=ok)
        )
        if not ok:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        step = self._steps.popleft() if self._steps else Step()
        if step.hang_sec:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), step.hang_sec)
        if step.json is not None:
            return JSONResponse(step.json, status_code=step.status, headers=step.headers)
        return Response(status_code=step.status, headers=step.headers)
