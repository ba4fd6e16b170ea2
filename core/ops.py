"""The operator commands of `callagent` (keys, maintenance, telegram-link): tasks run
against the same database `make run` uses. `cli.main` adds them to the console script.

Admin commands talk to PostgreSQL directly through core's own modules (so they work
whether or not core is running); with no DATABASE_URL they reuse the embedded server
in CALLAGENT_DATA_DIR, and stop it again afterwards if they were the ones to start it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import typer

from core.app import accounts, api_keys, maintenance
from core.domain.errors import CallagentError
from core.settings import Settings, get_settings
from core.store import database, migrations

app = typer.Typer(help="callagent operator commands.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
maintenance_app = typer.Typer(
    help="The maintenance window that gates new calls.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(maintenance_app, name="maintenance")

T = TypeVar("T")


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[asyncpg.Connection[Any]]:
    pgdata = settings.callagent_data_dir.resolve() / "pgdata"
    started_here = settings.database_url is None and not (pgdata / "postmaster.pid").exists()
    dsn = await database.resolve_dsn(settings)
    conn = await database.connect(dsn)
    try:
        await migrations.migrate(conn)
        yield conn
    finally:
        await conn.close()
        if started_here:
            database.stop_embedded(settings.callagent_data_dir)


def _run(action: Callable[[asyncpg.Connection[Any]], Awaitable[T]]) -> T:
    async def go() -> T:
        async with _database(get_settings()) as conn:
            return await action(conn)

    try:
        return asyncio.run(go())
    except CallagentError as err:
        typer.echo(f"error: {err.message} ({err.reason})", err=True)
        raise typer.Exit(2) from None


@keys_app.command("create")
def keys_create(
    customer: Annotated[str, typer.Option(help="Customer name (created when new).")],
    admin: Annotated[bool, typer.Option("--admin", help="Make an admin key.")] = False,
    quota: Annotated[
        int | None, typer.Option(help="Monthly quota in credits (new customers).")
    ] = None,
) -> None:
    """Create an API key; the last line printed is the key alone."""
    if not customer.strip():
        raise typer.BadParameter("customer name is required", param_hint="--customer")
    if quota is not None and quota < 0:
        raise typer.BadParameter("quota cannot be negative", param_hint="--quota")
    settings = get_settings()
    created = _run(
        lambda conn: api_keys.create_key(
            conn,
            customer.strip(),
            is_admin=admin,
            quota_limit=settings.default_quota_limit if quota is None else quota,
        )
    )
    typer.echo(f"customer {created.customer_id}, key {created.api_key_id} (shown once):")
    typer.echo(created.api_key)


@app.command("telegram-link")
def telegram_link(
    customer: Annotated[str, typer.Option(help="Customer name.")],
    chat_id: Annotated[int | None, typer.Option(help="Telegram chat id; omit to unlink.")] = None,
) -> None:
    """Send this customer's ask_user questions to a Telegram chat (ask_user_mode=any)."""

    customer_id = _run(lambda conn: accounts.link_telegram(conn, customer, chat_id))
    typer.echo(f"{customer_id}: telegram chat {'unlinked' if chat_id is None else chat_id}")


@maintenance_app.command("set")
def maintenance_set(
    message: Annotated[str, typer.Option(help="Shown to clients in the 503 body.")],
    resume_at: Annotated[str | None, typer.Option(help="ISO 8601 time with timezone.")] = None,
) -> None:
    """Open a maintenance window: new calls get 503 until it is cleared."""
    when = None
    if resume_at is not None:
        try:
            when = dt.datetime.fromisoformat(resume_at)
        except ValueError:
            raise typer.BadParameter("not an ISO 8601 time", param_hint="--resume-at") from None
        if when.tzinfo is None:
            raise typer.BadParameter(
                "give a timezone, e.g. 2026-12-01T10:00:00+00:00", param_hint="--resume-at"
            )
    window = _run(lambda conn: maintenance.set_window(conn, message, when))
    typer.echo(
        f"maintenance on: {window.message}"
        + (f" (resume at {window.resume_at.isoformat()})" if window.resume_at else "")
    )


@maintenance_app.command("clear")
def maintenance_clear() -> None:
    """End the maintenance window."""
    _run(maintenance.clear)
    typer.echo("maintenance off")
