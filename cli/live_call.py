"""`callagent call` once the call is placed: follow it live and answer its questions.

`run` starts the call, follows `GET /calls/{id}/events` (as JSON lines, plain lines, or
a rich live view on a terminal), sends what the person at the keyboard types to
`POST /calls/{id}/answer` for the oldest pending ask_user question, and ends with a
card of the outcome, charge and booking. Everything shown is built by `CallView` from
the events alone. rich and httpx are imported inside: other commands must not pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cli.api import Api, session
from cli.keyboard import Keyboard
from cli.view import ApiError, CallView, LogLine, card_rows, parse_answer, styled
from common import aio

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

AFTER_OUTCOME_SEC = 10.0  # the gateway closes 5 s after `outcome`; never wait longer than this


def say(text: str, console: Console | None = None, *, err: bool = False) -> None:
    """One plain line (no markup, no wrapping) unless a rich console is drawing."""
    if console is not None:
        console.print(text, markup=False)
    else:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


async def run(url: str, key: str | None, body: dict[str, Any], *, as_json: bool) -> int:
    from rich.console import Console
    from rich.live import Live

    out = Console(highlight=False)
    async with session(url, key) as api:
        status_code, started = await api.start_call(body)
        queued = status_code == 202
        call_id = started["call_id"] if queued else started["call"]["call_id"]
        view = CallView(call_id, body["target_phone"], started=time.monotonic())
        view.status = started.get("status", "queued") if queued else started["call"]["status"]
        view.position = started.get("position") if queued else None
        if as_json:
            print_json({"id": None, "event": "started", "data": started})
        live_mode = not as_json and out.is_terminal
        tty_in = sys.stdin.isatty()
        if not as_json:
            where = f" (queued, {view.position} ahead)" if queued else ""
            say(f"calling {view.phone}: {call_id}{where}", out if live_mode else None)

        def emit(lines: list[LogLine]) -> None:
            for line in lines:
                if live_mode:
                    out.print(styled(line))
                elif not as_json:
                    say(f"{line.kind}: {line.text}")
                elif line.kind in ("question", "answer") and tty_in:
                    say(f"{line.kind}: {line.text}", err=True)

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
                await aio.cancel_and_wait(answering)
        final = await api.call(call_id)
        details = (view.outcome or {}).get("details") or {}
        booking = await api.booking_for(call_id, details.get("booking_id"))
        if as_json:
            print_json({"id": None, "event": "final", "data": {"call": final, "booking": booking}})
        elif live_mode:
            out.print(render_card(call_id, card_rows(final, booking)))
        else:
            for label, value in card_rows(final, booking):
                say(f"{label}: {value}")
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
                        print_json(message)
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
