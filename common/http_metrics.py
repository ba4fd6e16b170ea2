"""Request counts and latencies for an ASGI app, and the `/metrics` endpoint that shows them.

The route label is the matched route's template (`/v1/calls/{call_id}`), read from the scope
after routing, so a million call ids stay one series; an unmatched path is `unmatched`.
Latency is measured to the status line, which for an SSE stream is when it opens rather than
when the stream ends hours later.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import metrics


class HttpMetrics:
    """ASGI middleware recording `callagent_http_*` for every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope["method"]
        status = 500  # what the server answers if the app raises before a response

        def record(code: int) -> None:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.HTTP_LATENCY.labels(template, method).observe(time.perf_counter() - start)
            metrics.HTTP_REQUESTS.labels(template, method, str(code)).inc()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = 0
                record(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if status:
                record(status)


async def metrics_endpoint(request: Request) -> Response:
    """`GET /metrics`: this process's series in Prometheus' text format."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
