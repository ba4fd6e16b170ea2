"""The few REST/SSE routes the terminal client uses, as one `Api` over an httpx client.

It speaks only the public contract (never the database), so what the client shows is
what any integration can see. Any non-2xx reply becomes an `ApiError`; the event
stream resumes after a drop with `Last-Event-ID`. httpx is imported inside the
functions: `callagent keys create` must not pay for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import typer

from cli.view import ApiError, SseParser, api_error

if TYPE_CHECKING:
    import httpx

DEFAULT_API_URL = "http://127.0.0.1:8080"
RECONNECTS = 5  # SSE reconnects in a row without an event before giving up
READ_TIMEOUT_SEC = 45.0  # three missed 15 s heartbeats
EXIT_API, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class Api:
    """The few routes this client uses, over one httpx client; any non-2xx is an ApiError."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.reconnects = 0

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        reply = await self.http.request(method, path, **kwargs)
        if reply.is_error:
            raise api_error(reply.status_code, _body(reply))
        return reply

    async def start_call(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST /calls: 201 with the call, or 202 with its place in the dial queue."""
        reply = await self._send("POST", "/calls", json=body, timeout=60)
        started: dict[str, Any] = reply.json()
        return reply.status_code, started

    async def call(self, call_id: str) -> dict[str, Any]:
        found: dict[str, Any] = (await self._send("GET", f"/calls/{call_id}")).json()
        return found

    async def calls(self, limit: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self._send("GET", "/calls", params={"limit": limit})
        ).json()
        return found

    async def bookings(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        found: list[dict[str, Any]] = (
            await self._send("GET", "/v1/booking/bookings", params=params)
        ).json()
        return found

    async def booking_for(self, call_id: str, booking_id: str | None) -> dict[str, Any] | None:
        """The call's booking: by the id its outcome named, else found among the newest 100
        (the list has no call_id filter)."""
        if booking_id:
            with contextlib.suppress(ApiError):
                found: dict[str, Any] = (
                    await self._send("GET", f"/v1/booking/bookings/{booking_id}")
                ).json()
                return found
        return next(
            (b for b in await self.bookings(None, 100) if b.get("call_id") == call_id), None
        )

    async def answer(self, call_id: str, request_id: str, answer: str, mode: str) -> bool:
        body = {"answer": answer, "request_id": request_id, "mode": mode}
        reply = await self._send("POST", f"/calls/{call_id}/answer", json=body)
        return bool(reply.json()["delivered"])

    async def events(self, call_id: str) -> AsyncGenerator[dict[str, Any]]:
        """Follow the call's SSE stream until it closes after `outcome`; after a drop, resume
        with `Last-Event-ID` (the gateway replays from the durable log: nothing lost or
        repeated), giving up after RECONNECTS attempts in a row that bring no event."""
        import httpx

        last: str | None = None
        failures = 0
        ended = False
        timeout = httpx.Timeout(10, read=READ_TIMEOUT_SEC)
        while True:
            parser = SseParser()
            parser.last_id = last
            headers = {"Last-Event-ID": last} if last else {}
            try:
                async with self.http.stream(
                    "GET", f"/calls/{call_id}/events", headers=headers, timeout=timeout
                ) as reply:
                    if reply.is_error:
                        await reply.aread()
                        error = api_error(reply.status_code, _body(reply))
                        if reply.status_code < 500:
                            raise error
                        problem: Exception = error
                    else:
                        async for line in reply.aiter_lines():
                            message = parser.feed(line)
                            if message is None:
                                continue
                            last, failures = parser.last_id, 0
                            ended = ended or message.event == "outcome"
                            yield message.as_dict()
                        if ended:
                            return
                        problem = ConnectionError("the event stream closed before the outcome")
            except httpx.TransportError as err:
                if ended:
                    return
                problem = err
            failures += 1
            if failures > RECONNECTS:
                raise ApiError(0, "STREAM_LOST", f"lost the event stream: {problem}")
            self.reconnects += 1
            await asyncio.sleep(min(8.0, 0.25 * 2**failures))


def _body(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return reply.text


@contextlib.asynccontextmanager
async def session(url: str, key: str | None) -> AsyncIterator[Api]:
    """An `Api` for one command; a missing key, an unreachable gateway or an API error
    ends the command with a one-line message and its exit code."""
    import httpx

    if not key:
        typer.echo("error: no API key; set CALLAGENT_API_KEY or pass --api-key", err=True)
        raise typer.Exit(EXIT_USAGE)
    headers = {"X-API-Key": key, "User-Agent": "callagent-cli"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as http:
        try:
            yield Api(http)
        except httpx.TransportError as err:
            typer.echo(f"error: cannot reach the API at {url}: {err!r}", err=True)
            raise typer.Exit(EXIT_API) from None
        except ApiError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(EXIT_API) from None
