"""Migrations: applied once, in order, even when two processes start at the same moment."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from core.store import database, migrations


async def test_concurrent_migration_applies_each_version_once(admin_dsn: str) -> None:
    name = f"m_{uuid.uuid4().hex[:12]}"
    await database.ensure_database(admin_dsn, name)
    dsn = database.with_database(admin_dsn, name)
    conns = [await database.connect(dsn) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrations.migrate(c) for c in conns))
        expected = [m.version for m in migrations.load()]
        assert sorted(results[0] + results[1]) == expected  # every version applied exactly once
        again = await migrations.migrate(conns[0])
        assert again == []
        versions = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == expected
    finally:
        for c in conns:
            await c.close()
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_ensure_database_is_race_safe(admin_dsn: str) -> None:
    name = f"r_{uuid.uuid4().hex[:12]}"
    await asyncio.gather(*(database.ensure_database(admin_dsn, name) for _ in range(4)))
    admin = await asyncpg.connect(admin_dsn)
    try:
        assert (
            await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
        )
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()
