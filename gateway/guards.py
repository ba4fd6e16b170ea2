"""ASGI guards in front of routing: the request-body cap and the `Allow` header.

`BodyCap` refuses a body past the cap with 413 REQUEST_TOO_LARGE before anything
parses it, counting the bytes as they arrive (Content-Length or chunked alike). It
buffers the body (at most the cap) and replays it to the app, so no route sees a
partial body. A body announced past DRAIN_BYTES is refused without reading a byte.

`MethodGuard` answers what the router alone gets wrong when several routes share a
path (`PUT` and `DELETE /users/me/webhook` are two routes): `OPTIONS` gets 204 with
every method the path serves, and a method the path does not serve gets 405 in the
contract's error shape with that same complete `Allow`.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import http_error

MAX_BODY_BYTES = 1024 * 1024
# An announced body past this is refused without reading it; a smaller one is read
# and dropped first (a "lingering close", as nginx does).
DRAIN_BYTES = 8 * 1024 * 1024


def _too_large(limit: int) -> Response:
    return http_error(
        413,
        "REQUEST_TOO_LARGE",
        f"the request body is larger than {limit // 1024} KB",
        headers={"Connection": "close"},
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyCap:
    """Refuses request bodies over `limit` bytes with 413, before the app reads them."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def _drain(self, receive: Receive, size: int, more: bool) -> None:
        """Read and drop the rest of a modest oversized body (up to DRAIN_BYTES) so the
        client, still sending, reads the 413 instead of a connection reset."""
        while more and size <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > DRAIN_BYTES:
            await _too_large(self.limit)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        first: Message = {"type": "http.request", "body": b"", "more_body": False}
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # a disconnect: the app sees it first
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._drain(receive, size, message.get("more_body", False))
                await _too_large(self.limit)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


class MethodGuard:
    """OPTIONS → 204 with the full `Allow`; an unserved method → 405 with the same list."""

    def __init__(self, app: ASGIApp, route_lists: Sequence[Sequence[BaseRoute]]) -> None:
        self.app = app
        # The app's own list and each included (unprefixed) router's list, read per
        # request so routes added after the middleware are seen too. An included router
        # appears in the app's list as a node without `methods`, so it is skipped there.
        self.route_lists = route_lists

    def allowed(self, scope: Scope) -> set[str]:
        methods: set[str] = set()
        for routes in self.route_lists:
            for route in routes:
                route_methods = getattr(route, "methods", None)
                if route_methods and route.matches(scope)[0] != Match.NONE:
                    methods |= set(route_methods)
        return methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed = self.allowed(scope)
        method = scope["method"]
        if not allowed or method in allowed:
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted(allowed | {"OPTIONS"}))
        if method == "OPTIONS":
            response: Response = Response(status_code=204, headers={"Allow": allow})
        else:
            response = http_error(
                405,
                "METHOD_NOT_ALLOWED",
                f"{method} is not allowed here; allowed: {allow}",
                headers={"Allow": allow},
            )
        await response(scope, receive, send)
