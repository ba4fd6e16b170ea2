"""Shared fixtures: one real PostgreSQL per session, a fresh database per test,
and real core / gateway servers on loopback ports.

PostgreSQL is the embedded server (in a temp dir, deleted afterwards) unless
DATABASE_URL is set. A template database is migrated once; each test gets
`CREATE DATABASE … TEMPLATE` — a fresh real database in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import httpx
import pytest
import uvicorn

from core import main as server
from core.app import api_keys
from core.settings import Settings
from core.store import database, migrations
from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from tests.fakes.telephony import FakeTelephony

if TYPE_CHECKING:
    from sim.carrier import SimCarrier

TEMPLATE = f"callagent_tpl_{os.getpid()}"
BOOTSTRAP_KEY = "ck_bootstrap_test_key_0123456789"
CONTEXT_SECRET = "test-gateway-context-secret"
INTERNAL_TOKEN = "test-internal-token"


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    # Not tmp_path_factory: pytest prunes old basetemp dirs, and a concurrent pytest
    # session would delete this server's data directory from under it.
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="callagent-test-pg-"))
    dsn = database.ensure_embedded(data_dir)
    yield dsn
    database.stop_embedded(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_db(admin_dsn: str) -> AsyncIterator[str]:
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
    await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    await conn.close()
    tpl = await database.connect(database.with_database(admin_dsn, TEMPLATE))
    await migrations.migrate(tpl)
    await tpl.close()
    yield TEMPLATE
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    await conn.close()


@pytest.fixture
async def db_dsn(admin_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    await conn.close()
    yield database.with_database(admin_dsn, name)
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    p = await database.create_pool(db_dsn, 1, 20)
    yield p
    await p.close()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "callagent_grpc_port": 0,
        "callagent_metrics_port": 0,
        "bootstrap_admin_api_key": BOOTSTRAP_KEY,
        "gateway_context_secret": CONTEXT_SECRET,
        "auth_cache_ttl_sec": 0,
        "default_quota_limit": 10_000,
        "internal_token": INTERNAL_TOKEN,
        "allow_fictional_numbers": True,
        "reconcile_interval_sec": 3600,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def telephony() -> FakeTelephony:
    return FakeTelephony()


@pytest.fixture
async def core(
    db_dsn: str, settings: Settings, telephony: FakeTelephony
) -> AsyncIterator[server.Core]:
    running = await server.start(settings, dsn=db_dsn, port=0, telephony=telephony)
    yield running
    await running.stop(grace=1)


@pytest.fixture
async def channel(core: server.Core) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as ch:
        yield ch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Run an ASGI app under a real uvicorn server on a loopback port; yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        await task


def make_gateway_settings(core_port: int, **overrides: Any) -> GatewaySettings:
    """The gateway's own settings, pointed at a core on this loopback port."""
    return GatewaySettings(core_grpc_target=f"127.0.0.1:{core_port}", **overrides)


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    """GatewaySettings fields for the `gateway_url` gateway; modules override it (e.g. a
    faster SSE heartbeat)."""
    return {}


@pytest.fixture
async def gateway_url(core: server.Core, gateway_overrides: dict[str, Any]) -> AsyncIterator[str]:
    gw_settings = make_gateway_settings(core.port, **gateway_overrides)
    async with serve_asgi(create_gateway(gw_settings)) as url:
        yield url


@pytest.fixture
async def http(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as client:
        yield client


async def new_customer(
    pool: asyncpg.Pool[Any], name: str | None = None, *, quota: int = 10_000, admin: bool = False
) -> api_keys.CreatedKey:
    async with pool.acquire() as conn:
        return await api_keys.create_key(
            conn, name or f"cust-{uuid.uuid4().hex[:8]}", is_admin=admin, quota_limit=quota
        )


@pytest.fixture
async def customer(core: server.Core) -> api_keys.CreatedKey:
    return await new_customer(core.pool)


@pytest.fixture
async def fronted_core(db_dsn: str) -> AsyncIterator[server.Core]:
    running = await server.start(
        make_settings(gateway_fronted=True), dsn=db_dsn, port=0, telephony=FakeTelephony()
    )
    yield running
    await running.stop(grace=1)


@pytest.fixture
async def fronted_http(fronted_core: server.Core) -> AsyncIterator[httpx.AsyncClient]:
    gw = make_gateway_settings(fronted_core.port)
    async with serve_asgi(create_gateway(gw)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


@pytest.fixture
async def fronted_customer(fronted_core: server.Core) -> api_keys.CreatedKey:
    return await new_customer(fronted_core.pool)


async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 10) -> None:
    """Wait until `check()` holds (state owned by another task or process), at most `limit` s."""
    async with asyncio.timeout(limit):
        while not await check():  # noqa: ASYNC110  # polling external state is the point
            await asyncio.sleep(0.02)


def assert_twilio_wire_clean(carrier: SimCarrier) -> None:
    """Every Media Streams message of every call, both ways, had Twilio's documented shape
    (`sim.stream_wire`). Each stack that builds a carrier calls this at teardown, so the test
    that caused a violation fails with the message and the reason."""
    found = [str(v) for v in carrier.violations]
    assert not found, "Media Streams messages off Twilio's documented wire:\n" + "\n".join(found)
