"""What one whole call costs each process and PostgreSQL, on the real `make run` stack.

`python -m dev.stack` in a fresh data dir (embedded PostgreSQL 18, core, gateway, media, the
simulated world) places CALLS booking calls at once through the public API (`POST /calls`,
then `GET /calls/{id}` once a second until the outcome is in) and waits until each merged
transcript is stored. The figures are differences of counters around those calls, minus
what the idle stack does in as long (reconciler, drainer, merge worker polls):

- CPU seconds of each child process (psutil) and of the PostgreSQL server's processes;
- rows inserted/updated/deleted per table (`pg_stat_user_tables`), commits
  (`pg_stat_database`), WAL bytes (`pg_current_wal_lsn`) and WAL records (`pg_stat_wal`).

A call here is a brisk booking (about 20 s of talk and five transcript lines; `SIM_SPEED=10`
shortens the venues' pauses, `SIM_SPEED=1` hardly lengthens it), shorter than a real one:
per-second figures (media) scale with talk time and include each call's set-up,
per-line ones (transcript, events) with the conversation. `BENCH_CALL_COST_STATEMENTS=1`
also logs every statement in the server's log and keeps the data dir. docs/scaling.md
reads these figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import pathlib
import re
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

import asyncpg
import httpx
import psutil

from core.store import database
from tests.conftest import free_port
from tests.e2e.test_make_run import PORTS, STRIPPED, STRIPPED_NAMES, TERMINAL

CALLS = int(os.environ.get("BENCH_CALL_COST_CALLS", "5"))
STATEMENTS = os.environ.get("BENCH_CALL_COST_STATEMENTS") == "1"
NUMBER = "+15550100"  # the shipped trattoria: books a table it has room for
BRIEF = "Table for 2 tomorrow at 19:00 under Anna"
CHILDREN = {
    "core.main": "core",
    "gateway.main": "gateway",
    "media.server": "media",
    "sim.main": "sim",
}
# Backends report their counters when idle, at the latest 10 s after their last transaction.
STATS_SETTLE_SEC = 12.0

TABLES = "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
COUNTERS = """
SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) AS commits,
       pg_current_wal_lsn() - '0/0'::pg_lsn AS wal_bytes,
       (SELECT wal_records FROM pg_stat_wal) AS wal_records
"""


def _processes(stack_pid: int, data_dir: pathlib.Path) -> dict[str, list[psutil.Process]]:
    """The stack's children by name, and `postgres`: the server and its backends."""
    found: dict[str, list[psutil.Process]] = {}
    for kid in psutil.Process(stack_pid).children():
        cmdline = kid.cmdline()
        if "-m" in cmdline and (name := CHILDREN.get(cmdline[cmdline.index("-m") + 1])):
            found[name] = [kid]
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
    found["postgres"] = [postmaster, *postmaster.children(recursive=True)]
    return found


def _cpu(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for name, procs in processes.items():
        total = 0.0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        seconds[f"cpu.{name}"] = total
    return seconds


async def _snapshot(
    conn: asyncpg.Connection[Any], processes: dict[str, list[psutil.Process]]
) -> dict[str, float]:
    found: dict[str, float] = {}
    for row in await conn.fetch(TABLES):
        for kind in ("ins", "upd", "del"):
            found[f"rows.{row['relname']}.{kind}"] = row[f"n_tup_{kind}"]
    counters = await conn.fetchrow(COUNTERS)
    assert counters is not None
    return found | {name: float(value) for name, value in counters.items()} | _cpu(processes)


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (
        datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)
    ).total_seconds()


def _minus(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


async def _place(api: httpx.AsyncClient) -> dict[str, Any]:
    body = {"target_phone": NUMBER, "brief": BRIEF, "language": "en"}
    started = await api.post("/calls", json=body)
    assert started.status_code == 201, started.text
    call_id: str = started.json()["call"]["call_id"]
    while True:
        call: dict[str, Any] = (await api.get(f"/calls/{call_id}")).json()
        if call["status"] in TERMINAL and (call["outcome_type"] or call["status"] != "completed"):
            return call
        await asyncio.sleep(1.0)


async def _merged(conn: asyncpg.Connection[Any]) -> None:
    while True:
        if not await conn.fetchval("SELECT count(*) FROM transcript_merges WHERE state <> 'done'"):
            return
        await asyncio.sleep(0.5)


async def _measure(data_dir: pathlib.Path, stack_pid: int, gateway: str, key: str) -> None:
    dsn = database.with_database(database.ensure_embedded(data_dir), database.DATABASE_NAME)
    conn = await asyncpg.connect(dsn)
    processes = _processes(stack_pid, data_dir)
    async with httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": key}) as api:
        raised = await api.put("/users/me/limits", json={"max_concurrent_calls": CALLS})
        assert raised.status_code == 200, raised.text
    if STATEMENTS:  # every statement into the server's log (pgdata/log), for reading by hand
        await conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        await conn.execute("SELECT pg_reload_conf()")
    try:
        idle_start = await _snapshot(conn, processes)
        started = time.monotonic()
        await asyncio.sleep(STATS_SETTLE_SEC)
        idle = _minus(await _snapshot(conn, processes), idle_start)
        idle_sec = time.monotonic() - started

        before = await _snapshot(conn, processes)
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": key}) as api:
            calls = await asyncio.gather(*(_place(api) for _ in range(CALLS)))
        await _merged(conn)
        await asyncio.sleep(STATS_SETTLE_SEC)
        busy = _minus(await _snapshot(conn, processes), before)
        busy_sec = time.monotonic() - started
        rss = {name: procs[0].memory_info().rss for name, procs in processes.items()}
    finally:
        await conn.close()
    # Wall-clock talk time: the carrier's duration_sec is the sim's (sped-up) clock.
    talk_sec = sum(_seconds(call["started_at"], call["ended_at"]) for call in calls)
    outcomes = ", ".join(sorted(f"{c['status']}/{c['outcome_type']}" for c in calls))
    scale = busy_sec / idle_sec
    per_call = {k: (v - idle.get(k, 0) * scale) / CALLS for k, v in busy.items()}
    print(f"{CALLS} calls at once ({outcomes}), {talk_sec:.0f} s of talk in all, {busy_sec:.0f} s")
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name in ("core", "gateway", "media", "sim", "postgres"):
        line = f"  CPU {name}: {1000 * per_call[f'cpu.{name}']:.0f} ms per call"
        if name == "media" and talk_sec:
            line += f", {1000 * per_call['cpu.media'] * CALLS / talk_sec:.1f} ms per call-second"
        print(line + f"; RSS {rss[name] / 2**20:.0f} MiB")
    rows = {k[5:]: v for k, v in per_call.items() if k.startswith("rows.") and round(v, 1)}
    for name in sorted(rows):
        print(f"  {name}: {rows[name]:.1f} rows per call")
    print(f"  rows written per call: {sum(rows.values()):.0f}")
    print(f"  commits per call: {per_call['commits']:.0f} (reads included)")
    wal_kib = per_call["wal_bytes"] / 1024
    print(f"  WAL per call: {wal_kib:.0f} KiB, {per_call['wal_records']:.0f} records")
    print(
        f"  idle stack: {60 * idle['commits'] / idle_sec:.0f} commits/min, "
        f"{60 * idle['wal_bytes'] / idle_sec / 1024:.0f} KiB WAL/min, "
        f"core {1000 * idle['cpu.core'] / idle_sec:.0f} ms CPU/s"
    )


async def run() -> None:
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="callagent-bench-call-cost-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(STRIPPED) and k not in STRIPPED_NAMES
    }
    env |= {name: str(free_port()) for name in PORTS}
    env |= {"CALLAGENT_DATA_DIR": str(data_dir), "SIM_SPEED": "10", "SIM_WORD_MS": "150"}
    env |= {"PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dev.stack",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    printed: list[str] = []
    drain: asyncio.Task[bytes] | None = None
    try:
        while not printed or printed[-1] != "Ctrl-C stops everything.":
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=180)
            if not line:
                raise RuntimeError("make run ended:\n" + "\n".join(printed))
            printed.append(line.decode().rstrip("\n"))
        text = "\n".join(printed)
        gateway = re.search(r"^gateway: (\S+)$", text, re.M)
        key = re.search(r"^demo customer API key \(shown once\): (\S+)$", text, re.M)
        assert gateway and key, text
        drain = asyncio.create_task(proc.stdout.read())  # keep the pipe from filling up
        await _measure(data_dir, proc.pid, gateway[1], key[1])
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        await proc.wait()
        if drain is not None:
            drain.cancel()
        if STATEMENTS:
            print(f"  statements logged in {data_dir / 'pgdata' / 'log'} (kept)")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
