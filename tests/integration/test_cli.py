"""The `callagent` operator commands, run as real processes against a running data dir."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator

import asyncpg
import pytest

from core.app import api_keys
from core.store import database, migrations

ROOT = pathlib.Path(__file__).resolve().parents[2]
# `callagent` is cli.main:app; run as a module of this tree (not whichever one is installed)
CLI = (sys.executable, "-m", "cli.main")


def tree_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with this tree (and its gen/ stubs) first on the subprocess's import path."""
    paths = [str(ROOT), str(ROOT / "gen"), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


async def _cli(data_dir: pathlib.Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CALLAGENT_DATA_DIR"] = str(data_dir)
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=tree_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture(scope="module")
def running_data_dir() -> Iterator[pathlib.Path]:
    """A data dir whose embedded server is up, as it is while `make run` runs."""
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="callagent-cli-"))
    database.ensure_embedded(data_dir)
    yield data_dir
    database.stop_embedded(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


async def test_keys_create_prints_key_last_and_stores_hash(running_data_dir: pathlib.Path) -> None:
    code, out, err = await _cli(
        running_data_dir, "keys", "create", "--customer", "acme", "--admin", "--quota", "777"
    )
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    assert key.startswith("ck_") and " " not in key
    dsn = database.with_database(database.ensure_embedded(running_data_dir), "callagent")
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT k.is_admin, c.quota_limit FROM api_keys k JOIN customers c USING (customer_id) "
            "WHERE k.key_hash = $1",
            api_keys.hash_key(key),
        )
        assert row is not None and row["is_admin"] and row["quota_limit"] == 777
        assert await conn.fetchval("SELECT count(*) FROM api_keys WHERE last_4 = $1", key[-4:]) == 1
    finally:
        await conn.close()
    # the server that "make run" owns is still up after the CLI exits
    assert (running_data_dir / "pgdata" / "postmaster.pid").exists()


async def test_maintenance_set_and_clear(running_data_dir: pathlib.Path) -> None:
    code, out, _ = await _cli(
        running_data_dir,
        "maintenance",
        "set",
        "--message",
        "upgrade",
        "--resume-at",
        "2030-01-01T10:00:00+00:00",
    )
    assert code == 0 and "upgrade" in out
    dsn = database.with_database(database.ensure_embedded(running_data_dir), "callagent")
    conn = await database.connect(dsn)
    try:
        await migrations.migrate(conn)
        row = await conn.fetchrow("SELECT active, message, resume_at FROM maintenance")
        assert row is not None and row["active"] and row["message"] == "upgrade"
        code, _, _ = await _cli(running_data_dir, "maintenance", "clear")
        assert code == 0
        assert await conn.fetchval("SELECT active FROM maintenance") is False
    finally:
        await conn.close()


async def test_bad_input_is_a_clear_error(running_data_dir: pathlib.Path) -> None:
    code, _, err = await _cli(
        running_data_dir, "maintenance", "set", "--message", "x", "--resume-at", "tomorrow"
    )
    assert code == 2 and "ISO 8601" in err
    code, _, err = await _cli(
        running_data_dir, "keys", "create", "--customer", "a", "--quota", "-1"
    )
    assert code == 2 and "negative" in err


async def test_telegram_link_links_unlinks_and_refuses_an_unknown_customer(
    running_data_dir: pathlib.Path,
) -> None:
    code, _, err = await _cli(running_data_dir, "keys", "create", "--customer", "tg-linked")
    assert code == 0, err
    code, out, err = await _cli(
        running_data_dir, "telegram-link", "--customer", "tg-linked", "--chat-id", "4242"
    )
    assert code == 0, err
    assert "telegram chat 4242" in out
    dsn = database.with_database(database.ensure_embedded(running_data_dir), "callagent")
    conn = await asyncpg.connect(dsn)
    try:
        query = "SELECT telegram_chat_id FROM customers WHERE name = 'tg-linked'"
        assert await conn.fetchval(query) == 4242
        code, out, err = await _cli(running_data_dir, "telegram-link", "--customer", "tg-linked")
        assert code == 0, err
        assert "unlinked" in out
        assert await conn.fetchval(query) is None
    finally:
        await conn.close()
    code, _, err = await _cli(running_data_dir, "telegram-link", "--customer", "nobody-here")
    assert code == 2
    assert "no customer named 'nobody-here' (NOT_FOUND)" in err
