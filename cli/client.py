"""`callagent call | calls | bookings`: a terminal client of the public REST/SSE API.

It speaks only the contract a customer's integration speaks (never the database), so
what it shows is what any integration can see. This module holds the commands and
their options; `cli.live_call` follows a placed call, `cli.api` is the REST/SSE client
and `cli.view` builds everything shown from events alone (tested without a terminal).
httpx and rich are imported inside the commands: `callagent keys create` must not pay
for them.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from cli import live_call
from cli.api import DEFAULT_API_URL, EXIT_INTERRUPTED, session
from cli.live_call import print_json
from cli.view import INT_RE, AskMode, duration_text, money, when_text

ApiUrl = Annotated[
    str, typer.Option("--api-url", envvar="CALLAGENT_API_URL", help="Gateway base URL.")
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="CALLAGENT_API_KEY", help="Your API key (X-API-Key)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")]


def _slots(pairs: list[str]) -> dict[str, Any]:
    slots: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="--slot")
        slots[key.strip()] = int(value) if INT_RE.fullmatch(value.strip()) else value
    return slots


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
        code = asyncio.run(live_call.run(api_url, api_key, body, as_json=as_json))
    except KeyboardInterrupt:
        typer.echo("\nstopped following; the call goes on (see `callagent calls`)", err=True)
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


def calls(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """List your calls, newest first."""

    async def go() -> list[dict[str, Any]]:
        async with session(api_url, api_key) as api:
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
        async with session(api_url, api_key) as api:
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
            print_json(row)
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
