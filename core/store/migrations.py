"""Versioned SQL migrations, applied at start-up by every process that needs the schema.

Files are `migrations/NNNN_what.sql`, applied in order inside one transaction that
first takes a transaction-level advisory lock, so two processes starting at once
apply each migration exactly once (the second waits, then sees them recorded).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import re
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = pathlib.Path(__file__).parent / "migrations"
ADVISORY_LOCK_KEY = 0x63616C6C  # "call": serialises migration runs across processes
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load() -> list[Migration]:
    """All migration files, ordered by version; a malformed name is a packaging bug."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise RuntimeError(f"bad migration file name: {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("duplicate migration versions")
    return found


async def migrate(conn: asyncpg.Connection[Any]) -> list[int]:
    """Apply pending migrations; return the versions applied by this call."""
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in load():
            if migration.version in done:
                continue
            log.info("applying migration", extra={"version": migration.version})
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now.append(migration.version)
    return applied_now
