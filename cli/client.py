"""`callagent call | calls | bookings`: a terminal client of the public REST/SSE API.

It speaks only the contract a customer's integration speaks (never the database), so
what it shows is what any integration can see. `call` starts a call, follows
`GET /calls/{id}/events`, lets the person at the keyboard answer the agent's ask_user
questions, and ends with a card of the outcome, charge and booking. `CallView` holds
everything shown, built from events alone, so it is tested without a terminal.
httpx and rich are imported inside the commands: `callagent keys create` must not pay
for them.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.view import (
    INT_RE,
    ApiError,
    AskMode,
    CallView,
    LogLine,
    SseParser,
    api_error,
    card_rows,
    duration_text,
    money,
    parse_answer,
    styled,
    when_text,
)

if TYPE_CHECKING:
    import httpx
    from rich.console import Console, RenderableType

DEFAULT_API_URL = "http://127.0.0.1:8080"
RECONNECTS = 5  # SSE reconnects in a row without an event before giving up
READ_TIMEOUT_SEC = 45.0  # three missed 15 s heartbeats
AFTER_OUTCOME_SEC = 10.0  # the gateway closes 5 s after `outcome`; never wait longer than this
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


class Keyboard:
    """Stdin read on the event loop (add_reader), so waiting for an answer never stalls the
    event stream. In key mode the terminal is in cbreak with echo off and the live view
    draws the line being typed; otherwise whole lines are delivered."""

    def __init__(self, *, keys: bool) -> None:
        self.keys = keys
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._fd = sys.stdin.fileno()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._saved: list[Any] | None = None
        self._watching = False

    def __enter__(self) -> Keyboard:
        if self.keys:
            import termios
            import tty

            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        try:
            asyncio.get_running_loop().add_reader(self._fd, self._readable)
            self._watching = True
        except PermissionError:  # a regular file or /dev/null: reading never blocks
            while self._readable():
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        self._unwatch()
        if self._saved is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def _readable(self) -> bool:
        try:
            chunk = os.read(self._fd, 4096)
        except BlockingIOError:
            return True
        text = self._decoder.decode(chunk, final=not chunk)
        if self.keys:
            for key in text:
                self.queue.put_nowait(key)
        else:
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                self.queue.put_nowait(line)
        if not chunk:
            if self._partial:
                self.queue.put_nowait(self._partial)
            self.queue.put_nowait(None)
            self._unwatch()
        return bool(chunk)

    def _unwatch(self) -> None:
        if self._watching:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._watching = False


# ---- the commands --------------------------------------------------------------------------

ApiUrl = Annotated[
    str, typer.Option("--api-url", envvar="CALLAGENT_API_URL", help="Gateway base URL.")
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="CALLAGENT_API_KEY", help="Your API key (X-API-Key)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")]


@contextlib.asynccontextmanager
async def _api(url: str, key: str | None) -> AsyncIterator[Api]:
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


def _slots(pairs: list[str]) -> dict[str, Any]:
    slots: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="--slot")
        slots[key.strip()] = int(value) if INT_RE.fullmatch(value.strip()) else value
    return slots


def _say(text: str, console: Console | None = None, *, err: bool = False) -> None:
    """One plain line (no markup, no wrapping) unless a rich console is drawing."""
    if console is not None:
        console.print(text, markup=False)
    else:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def call(
    number: Annotated[str, typer.Argument(help="The number to dial, E.164 (+15550100).")],
    brief: Annotated[str, typer.Argument(help="What the agent should get done.")],
    kind: Annotated[
        str | None, typer.Option(help="restaurant_booking, doctor_appointment, hotel_booking, …")
    ] = None,
    language: Annotated[str | None, typer.Option(help="en, ru, … (default: auto).")] = None,
    slot: Annotated[
        list[str] | None, typer.Option(help="key=value for parsed_slots; repeatable.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='JSON lines: {"id": null, "event": "started", "data": <POST /calls reply>}, '
            'one {"id", "event", "data"} per SSE event, then '
            '{"id": null, "event": "final", "data": {"call", "booking"}}.',
        ),
    ] = False,
    mode: Annotated[
        AskMode, typer.Option(help="stream: this terminal answers; any: Telegram/webhook too.")
    ] = AskMode.stream,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Place a call and follow it live; answer the agent's questions as they come."""
    body: dict[str, Any] = {"target_phone": number, "brief": brief, "ask_user_mode": mode.value}
    if kind:
        body["kind"] = kind
    if language:
        body["language"] = language
    if slot:
        body["parsed_slots"] = _slots(slot)
    try:
        code = asyncio.run(_call(api_url, api_key, body, as_json=as_json))
    except KeyboardInterrupt:
        typer.echo("\nstopped following; the call goes on (see `callagent calls`)", err=True)
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


async def _call(url: str, key: str | None, body: dict[str, Any], *, as_json: bool) -> int:
    from rich.console import Console
    from rich.live import Live

    out = Console(highlight=False)
    async with _api(url, key) as api:
        status_code, started = await api.start_call(body)
        queued = status_code == 202
        call_id = started["call_id"] if queued else started["call"]["call_id"]
        view = CallView(call_id, body["target_phone"], started=time.monotonic())
        view.status = started.get("status", "queued") if queued else started["call"]["status"]
        view.position = started.get("position") if queued else None
        if as_json:
            _print_json({"id": None, "event": "started", "data": started})
        live_mode = not as_json and out.is_terminal
        tty_in = sys.stdin.isatty()
        if not as_json:
            where = f" (queued, {view.position} ahead)" if queued else ""
            _say(f"calling {view.phone}: {call_id}{where}", out if live_mode else None)

        def emit(lines: list[LogLine]) -> None:
            for line in lines:
                if live_mode:
                    out.print(styled(line))
                elif not as_json:
                    _say(f"{line.kind}: {line.text}")
                elif line.kind in ("question", "answer") and tty_in:
                    _say(f"{line.kind}: {line.text}", err=True)

        keyboard: Keyboard | None = None
        if not as_json or tty_in:
            with contextlib.suppress(OSError, ValueError, AttributeError):  # no usable stdin
                keyboard = Keyboard(keys=live_mode and tty_in)
        with contextlib.ExitStack() as stack:
            if live_mode:
                stack.enter_context(
                    Live(
                        console=out,
                        get_renderable=lambda: view.render(time.monotonic()),
                        transient=True,
                        refresh_per_second=8,
                    )
                )
            answering: asyncio.Task[None] | None = None
            if keyboard is not None:
                stack.enter_context(keyboard)
                answering = asyncio.create_task(_answer(api, view, keyboard, emit))
            try:
                await _follow(api, view, emit, as_json=as_json)
            finally:
                if answering is not None:
                    answering.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await answering
        final = await api.call(call_id)
        details = (view.outcome or {}).get("details") or {}
        booking = await api.booking_for(call_id, details.get("booking_id"))
        if as_json:
            _print_json({"id": None, "event": "final", "data": {"call": final, "booking": booking}})
        elif live_mode:
            out.print(render_card(call_id, card_rows(final, booking)))
        else:
            for label, value in card_rows(final, booking):
                _say(f"{label}: {value}")
    return 0


async def _follow(
    api: Api, view: CallView, emit: Callable[[list[LogLine]], None], *, as_json: bool
) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            async with contextlib.aclosing(api.events(view.call_id)) as stream:
                async for message in stream:
                    if as_json:
                        _print_json(message)
                    data = message["data"] if isinstance(message["data"], dict) else {}
                    emit(view.apply(message["event"], data))
                    if message["event"] == "outcome":
                        deadline.reschedule(loop.time() + AFTER_OUTCOME_SEC)
    except TimeoutError:
        if view.outcome is None:
            raise


async def _answer(
    api: Api, view: CallView, keyboard: Keyboard, emit: Callable[[list[LogLine]], None]
) -> None:
    """Typed lines → POST /calls/{id}/answer for the oldest pending question."""
    import httpx

    while (key := await keyboard.queue.get()) is not None:
        typed = view.type_key(key) if keyboard.keys else key
        if typed is None or not typed.strip():
            continue
        if not view.questions:
            view.note = "no question is waiting for an answer"
            emit([LogLine("answer", view.note)])
            continue
        question = view.questions[0]
        parsed = parse_answer(typed, question)
        if parsed is None:
            continue
        view.sent[question.request_id] = parsed[0]  # the `answer` event may beat the reply
        try:
            delivered = await api.answer(view.call_id, question.request_id, *parsed)
        except (ApiError, httpx.TransportError) as err:
            view.sent.pop(question.request_id, None)
            view.note = f"answer failed: {err}"
            emit([LogLine("error", view.note)])
            continue
        if not delivered:
            view.questions = [q for q in view.questions if q is not question]


def render_card(call_id: str, rows: list[tuple[str, str]]) -> RenderableType:
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value)
    return Panel(grid, title=call_id, border_style="green", expand=False)


def calls(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """List your calls, newest first."""

    async def go() -> list[dict[str, Any]]:
        async with _api(api_url, api_key) as api:
            return await api.calls(limit)

    rows = asyncio.run(go())
    _table(
        rows,
        as_json,
        "calls",
        [
            ("created", lambda c: when_text(c.get("created_at"))),
            ("call", lambda c: c["call_id"]),
            ("number", lambda c: c["target_phone"]),
            ("status", lambda c: c["status"]),
            ("outcome", lambda c: c.get("outcome_type") or ""),
            ("duration", lambda c: duration_text(c.get("duration_sec"))),
            ("charge", lambda c: money(c["outcome_charge_cents"]) if c.get("ended_at") else "—"),
        ],
    )


def bookings(
    status: Annotated[
        str | None, typer.Option(help="active, pending_user_confirm, past or cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many (1–100), newest first.")] = 20,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """List the bookings your calls made, newest first."""

    async def go() -> list[dict[str, Any]]:
        async with _api(api_url, api_key) as api:
            return await api.bookings(status, limit)

    rows = asyncio.run(go())
    _table(
        rows,
        as_json,
        "bookings",
        [
            ("created", lambda b: when_text(b.get("created_at"))),
            ("status", lambda b: b["status"]),
            ("date", lambda b: when_text(b.get("booking_date"))),
            ("guests", lambda b: str(b.get("guests") or "")),
            ("name", lambda b: b.get("booking_holder_name") or ""),
            ("venue", lambda b: b.get("venue_name") or b["target_phone"]),
            ("refusal", lambda b: b.get("refusal_reason") or ""),
            ("call", lambda b: b.get("call_id") or ""),
        ],
    )


def _table(rows: list[dict[str, Any]], as_json: bool, title: str, columns: list[Any]) -> None:
    if as_json:
        for row in rows:
            _print_json(row)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} {title}", title_justify="left")
    for name, _ in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(str(cell(row)) for _, cell in columns))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add `call`, `calls` and `bookings` to the `callagent` command."""
    app.command("call")(call)
    app.command("calls")(calls)
    app.command("bookings")(bookings)
