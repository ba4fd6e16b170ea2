"""Two of every process on one PostgreSQL; kill -9 a core, then a media pod, mid-calls;
then kill -9 the dial queue's leader while calls wait in the queue.

Real subprocesses, as Kubernetes would run them: 2 gateways, 2 cores and 2 media and the
simulated world, on one embedded PostgreSQL. The carrier reaches media through one public
URL, so a round-robin TCP balancer (`tests.tcp_balancer`) spreads the calls' streams over
both media pods. Each gateway and media pod lists both cores (`ipv4:` target, pick-first,
in opposite orders) as a Service would. Calls go through the dial queue, which the core
holding the drainer's advisory lock dials. 20 calls to the default venue (which books as
asked) alternate between the gateways; once all talk, one core is killed (its sessions
re-attach to the other) and comes back, as its Deployment would restart it; then one
media pod is killed. Every call that lived on the surviving media ends booked with a
booking; every call still live on the killed pod is terminal within 10 s, failed and not
charged (Twilio's own `completed` for it waits for an outcome that never comes). Then,
with the customer's cap lowered so new calls wait queued, the drainer's leader is killed
and restarted; once the cap is raised the other core, now leading, dials each waiting
call once and each books. Each call's event stream is exactly its stored events in
order, also when resumed on the other gateway; the ledger is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest

from core.app.drainer import LEADER_LOCK_KEY
from core.main import prepare_database
from core.settings import Settings
from core.store import database
from dev import stack
from tests.conftest import free_port
from tests.e2e.test_make_run import PORTS, STRIPPED, STRIPPED_NAMES, TERMINAL, poll
from tests.tcp_balancer import Balancer

ROOT = pathlib.Path(__file__).resolve().parents[2]
CALLS = 20
LATER = 4  # calls queued while the drainer's leader is killed
SETTLE_SEC = 10.0  # MEDIA_SESSION_GRACE_SEC (5 s) + the hang-up and settlement

pytestmark = pytest.mark.timeout(600)


@dataclasses.dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: pathlib.Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@dataclasses.dataclass
class World:
    data_dir: pathlib.Path
    dsn: str
    key: str
    gateways: list[str]
    procs: dict[str, Proc] = dataclasses.field(default_factory=dict)
    commands: dict[str, tuple[str, dict[str, str]]] = dataclasses.field(default_factory=dict)

    def start(self, name: str, module: str, env: dict[str, str]) -> None:
        self.commands[name] = (module, env)
        log = self.data_dir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = Proc(name, popen, log)

    def kill(self, name: str) -> None:
        proc = self.procs[name].popen
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self, name: str) -> None:
        """Start `name` again as it was started (its log goes on in the same file)."""
        self.start(name, *self.commands[name])

    def logs(self) -> str:
        for p in self.procs.values():  # kept for a look after a failure
            shutil.copy(p.log, pathlib.Path(tempfile.gettempdir()) / f"chaos-{p.name}.log")
        return "\n".join(f"--- {p.name}\n{p.text()[-4000:]}" for p in self.procs.values())

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=10)


def base_env(data_dir: pathlib.Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(STRIPPED) and k not in STRIPPED_NAMES
    }
    env |= {name: str(free_port()) for name in PORTS}
    return env | {
        "CALLAGENT_DATA_DIR": str(data_dir),
        "SIM_SPEED": "10",
        "SIM_WORD_MS": "150",
        "PYTHONUNBUFFERED": "1",
        "LOG_FORMAT": "json",
    }


async def prepare(data_dir: pathlib.Path) -> tuple[str, str]:
    """Migrations and the demo customer's key, as `make run` does once for all children."""
    settings = Settings(callagent_data_dir=data_dir)
    dsn = await prepare_database(settings)
    key = await stack._demo_key(dsn, settings)
    assert key is not None
    return dsn, key


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """This process's environment is `env` inside (the stack reads its settings from it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def world(balancer_type: type[Balancer] = Balancer) -> Iterator[World]:
    # Not under tmp_path: as root the embedded server runs as its own user.
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="callagent-chaos-"))
    env = base_env(data_dir)
    media_ports = [free_port(), free_port()]
    balancer = balancer_type(free_port(), media_ports)
    try:
        with environ(env):
            dsn, key = asyncio.run(prepare(data_dir))
            provider_env, simulated = stack._provider_env(Settings())
        assert simulated == ["Twilio", "Gemini", "Deepgram"], simulated
        env |= provider_env | {"DATABASE_URL": dsn}
        env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{balancer.port}"
        cores = [free_port(), free_port()]
        targets = [
            f"ipv4:127.0.0.1:{cores[0]},127.0.0.1:{cores[1]}",
            f"ipv4:127.0.0.1:{cores[1]},127.0.0.1:{cores[0]}",
        ]
        gateways = [free_port(), free_port()]
        w = World(data_dir, dsn, key, [f"http://127.0.0.1:{p}" for p in gateways])
        with balancer.running():
            try:
                w.start("sim", "sim.main", env)
                for i, name in enumerate("ab"):
                    core = {"POD_NAME": f"core-{name}", "CALLAGENT_GRPC_PORT": str(cores[i])}
                    core["CALLAGENT_METRICS_PORT"] = "0"
                    core |= {"CALL_QUEUE_ENABLED": "true", "DIAL_CPS": "5"}
                    core["DRAINER_POLL_SEC"] = "0.5"
                    w.start(f"core-{name}", "core.main", env | core)
                    gateway = {"CALLAGENT_HTTP_PORT": str(gateways[i])}
                    w.start(
                        f"gateway-{name}",
                        "gateway.main",
                        env | gateway | {"CORE_GRPC_TARGET": targets[i]},
                    )
                    w.start(
                        f"media-{name}",
                        "media.server",
                        env
                        | {
                            "POD_NAME": f"media-{name}",
                            "CALLAGENT_MEDIA_PORT": str(media_ports[i]),
                            "CORE_GRPC_TARGET": targets[i],
                        },
                    )
                urls = [f"{g}/healthz" for g in w.gateways]
                urls += [f"http://127.0.0.1:{p}/readyz" for p in media_ports]
                sim = ("SIM_TWILIO_PORT", "SIM_GEMINI_REST_PORT", "SIM_DEEPGRAM_HTTP_PORT")
                urls += [f"http://127.0.0.1:{env[port]}/" for port in sim]

                def serving() -> bool:
                    dead = [p.name for p in w.procs.values() if not p.alive()]
                    assert not dead, f"{dead} exited:\n{w.logs()}"
                    for url in urls:
                        try:
                            httpx.get(url, timeout=3)
                        except httpx.TransportError:
                            return False
                    for g in w.gateways:
                        try:
                            me = httpx.get(f"{g}/users/me", headers={"X-API-Key": key}, timeout=5)
                        except httpx.TransportError:
                            return False
                        if me.status_code != 200:
                            return False
                    return all(
                        httpx.get(u, timeout=3).status_code == 200 for u in urls if "readyz" in u
                    )

                poll(serving, timeout=180)
                yield w
            finally:
                w.stop()
    finally:
        database.stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


async def drainer_leader(dsn: str) -> str | None:
    """The core holding the dial queue's advisory lock (its connection is named for it)."""
    conn = await asyncpg.connect(dsn)
    try:
        name = await conn.fetchval(
            """SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
               WHERE l.locktype = 'advisory' AND l.granted AND l.objid::bigint = $1""",
            LEADER_LOCK_KEY,
        )
    finally:
        await conn.close()
    return name.removeprefix("callagent drainer ") if name else None


def owners(w: World, ids: list[str]) -> dict[str, str]:
    """Which media pod ran each call, from the call_id on its JSON log lines."""
    found: dict[str, str] = {}
    for name in ("media-a", "media-b"):
        for line in w.procs[name].text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("call_id") in ids:
                    found.setdefault(record["call_id"], name)
    return found


def sse_ids(gateway: str, key: str, call_id: str, after: int = 0) -> list[int]:
    """Every event id the SSE stream sends (from `after`) until the gateway ends it."""
    headers = {"X-API-Key": key}
    if after:
        headers["Last-Event-ID"] = str(after)
    ids: list[int] = []
    url = f"{gateway}/calls/{call_id}/events"
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=60)) as got:
        assert got.status_code == 200, got.read()
        for line in got.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            assert not line.startswith("event: error"), line
    return ids


async def stored(dsn: str, ids: list[str]) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        events = await conn.fetch(
            "SELECT call_id, event_id, type, payload FROM call_events WHERE call_id = ANY($1)"
            " ORDER BY event_id",
            ids,
        )
        ledger = await conn.fetch(
            """SELECT c.customer_id, c.current_usage,
                      (SELECT coalesce(sum(amount), 0) FROM credit_reservations r
                       WHERE r.customer_id = c.customer_id AND r.status = 'open')
                    + (SELECT coalesce(sum(captured_amount), 0) FROM credit_reservations r
                       WHERE r.customer_id = c.customer_id AND r.status = 'captured') AS ledger
               FROM customers c"""
        )
        holds = await conn.fetch(
            """SELECT c.call_id, c.status, c.outcome_charge_cents, r.status AS hold,
                      r.captured_amount
               FROM calls c JOIN credit_reservations r USING (call_id)
               WHERE c.call_id = ANY($1)""",
            ids,
        )
    finally:
        await conn.close()
    return {"events": events, "ledger": ledger, "holds": holds}


def test_two_of_everything_survive_kill_9_of_a_core_and_of_a_media_pod() -> None:
    began = time.monotonic()
    with world() as w:
        key = w.key
        apis = [
            httpx.Client(base_url=g, headers={"X-API-Key": key}, timeout=10) for g in w.gateways
        ]
        try:

            def set_cap(limit: int) -> bool:
                """Through whichever gateway answers (one may be between cores)."""
                for api in apis:
                    with contextlib.suppress(httpx.TransportError):
                        body = {"max_concurrent_calls": limit}
                        if api.put("/users/me/limits", json=body).status_code == 200:
                            return True
                return False

            def place(n: int, phone: str) -> str:
                """A booking call through gateway n % 2, queued; its call id."""
                body = {
                    "target_phone": phone,
                    "brief": "Table for 2 tomorrow at 19:00 under Anna",
                    "language": "en",
                    "kind": "restaurant_booking",
                    "ask_user_mode": "stream",
                }
                started = apis[n % 2].post("/calls", json=body)
                assert started.status_code == 202, started.text
                return str(started.json()["call_id"])

            assert set_cap(CALLS)
            ids = [place(n, f"+155501{60 + n}") for n in range(CALLS)]

            def calls() -> list[dict[str, Any]]:
                found = []
                for i, call_id in enumerate(ids):
                    for api in (apis[i % 2], apis[(i + 1) % 2]):  # a gateway may be between cores
                        with contextlib.suppress(httpx.TransportError):
                            got = api.get(f"/calls/{call_id}")
                            if got.status_code == 200:
                                found.append(got.json())
                                break
                    else:
                        return []
                return found

            def all_talking() -> bool:
                # In progress, and its media pod has started the call's bridge (logged it).
                now = calls()
                talking = bool(now) and all(c["status"] == "in_progress" for c in now)
                return talking and len(owners(w, ids)) == CALLS

            poll(all_talking, timeout=180)
            spread = owners(w, ids)
            assert set(spread.values()) == {"media-a", "media-b"}, f"{spread}\n{w.logs()}"

            # 1. kill -9 a core: the sessions on it re-attach to the other one; it comes back.
            w.kill("core-a")
            w.restart("core-a")

            # 2. kill -9 a media pod while its calls still talk (after the re-attach began).
            def someone_talks_on_b() -> bool:
                now = {c["call_id"]: c["status"] for c in calls()}
                live = [i for i, pod in owners(w, ids).items() if pod == "media-b"]
                return any(now.get(i) == "in_progress" for i in live)

            poll(someone_talks_on_b, timeout=30)
            at_kill = {c["call_id"]: c["status"] for c in calls()}
            w.kill("media-b")
            killed_at = time.monotonic()
            spread = owners(w, ids)
            assert set(spread) == set(ids), f"{spread}\n{w.logs()}"
            doomed = [i for i in ids if spread[i] == "media-b" and at_kill[i] not in TERMINAL]
            survivors = [i for i in ids if spread[i] == "media-a"]
            assert doomed and survivors, (spread, at_kill)

            def doomed_settled() -> bool:
                now = {c["call_id"]: c for c in calls()}
                return bool(now) and all(now[i]["status"] in TERMINAL for i in doomed)

            poll(doomed_settled, timeout=SETTLE_SEC + 5)
            settled_in = time.monotonic() - killed_at
            assert settled_in <= SETTLE_SEC, f"{settled_in:.1f} s"

            def all_ended() -> list[dict[str, Any]] | None:
                now = calls()
                # A call on the killed pod ends without an outcome (nobody reported one).
                done = now and all(
                    c["status"] in TERMINAL and (c["outcome_type"] or c["call_id"] in doomed)
                    for c in now
                )
                return now if done else None

            ended = poll(all_ended, timeout=240, fail=False)
            stuck = [
                (c["call_id"], spread[c["call_id"]], c["status"], c["outcome_type"])
                for c in calls()
                if c["status"] not in TERMINAL or not c["outcome_type"]
            ]
            assert ended, f"not ended: {stuck}\n{w.logs()}"
            final = {c["call_id"]: c for c in ended}
            booked = {
                b["call_id"]
                for b in apis[1].get("/v1/booking/bookings", params={"limit": 100}).json()
            }
            lost = [
                (i, final[i]["status"], final[i]["outcome_type"])
                for i in survivors
                if final[i]["outcome_type"] != "booked" or i not in booked
            ]
            assert not lost, f"{lost}\n{w.logs()}"
            # Twilio ended them first; its `completed` waited for an outcome never sent.
            doomed_ends = {(final[i]["status"], final[i]["outcome_type"]) for i in doomed}
            assert doomed_ends == {("failed", "failed")}, doomed_ends
            assert all(
                "the carrier had ended the call" in final[i]["outcome_summary"] for i in doomed
            ), [final[i]["outcome_summary"] for i in doomed]

            # 3. kill -9 the drainer's leader while calls wait in the queue (the cap holds
            # them), restart it, then let them go: the core now leading dials each once.
            assert set_cap(1)
            later = [place(n, f"+155501{80 + n}") for n in range(LATER)]
            ids += later

            def one_dialed_rest_wait() -> bool:
                now = [c["status"] for c in calls() if c["call_id"] in later]
                return now.count("queued") == LATER - 1

            poll(one_dialed_rest_wait, timeout=30)
            leading = asyncio.run(drainer_leader(w.dsn))
            assert leading in ("core-a", "core-b"), leading
            w.kill(leading)
            w.restart(leading)
            poll(lambda: set_cap(CALLS), timeout=30)

            def later_booked() -> bool:
                now = [c for c in calls() if c["call_id"] in later]
                return len(now) == LATER and all(c["outcome_type"] == "booked" for c in now)

            if not poll(later_booked, timeout=120, fail=False):
                states = [
                    (c["call_id"], c["status"], c["outcome_type"], c["outcome_summary"])
                    for c in calls()
                    if c["call_id"] in later
                ]
                pytest.fail(f"queued calls not booked: {states}\n{w.logs()}")
            booked = {
                b["call_id"]
                for b in apis[1].get("/v1/booking/bookings", params={"limit": 100}).json()
            }
            assert set(later) <= booked, (later, booked)

            # Events: each call's SSE stream is exactly what is stored, in order, and a
            # resume from its middle gives exactly the rest.
            with ThreadPoolExecutor(max_workers=10) as pool:
                streamed = dict(
                    zip(
                        ids,
                        pool.map(lambda i: sse_ids(w.gateways[ids.index(i) % 2], key, i), ids),
                        strict=True,
                    )
                )
            db = asyncio.run(stored(w.dsn, ids))
            per_call: dict[str, list[int]] = {i: [] for i in ids}
            for row in db["events"]:
                per_call[row["call_id"]].append(row["event_id"])
            for i in ids:
                # The stream ends a little after the outcome; later events (the merged
                # transcript) are stored after it closed.
                outcomes = [
                    r["event_id"]
                    for r in db["events"]
                    if r["call_id"] == i and r["type"] == "outcome"
                ]
                assert len(outcomes) == 1, (i, outcomes)
                sent = streamed[i]
                assert sent and outcomes[0] in sent, (i, sent, outcomes)
                assert sent == [e for e in per_call[i] if e <= sent[-1]], (i, sent, per_call[i])
                middle = sent[len(sent) // 2]
                tail = sse_ids(w.gateways[(ids.index(i) + 1) % 2], key, i, after=middle)
                assert tail and tail[-1] >= outcomes[0], (i, tail, outcomes)
                assert tail == [e for e in per_call[i] if middle < e <= tail[-1]], (i, tail)

            # Ledger: usage = open holds + captures; no open hold on a terminal call; a
            # charge only for a completed call, exactly its outcome charge.
            for row in db["ledger"]:
                assert row["current_usage"] == row["ledger"], dict(row)
            assert len(db["holds"]) == CALLS + LATER, db["holds"]
            for i in ids:  # dialed exactly once, across the restarts of cores and leader
                dials = [
                    r
                    for r in db["events"]
                    if r["call_id"] == i
                    and r["type"] == "status"
                    and json.loads(r["payload"])["status"] == "dialing"
                ]
                assert len(dials) == 1, (i, dials)
            for row in db["holds"]:
                assert row["hold"] != "open", dict(row)
                if row["status"] == "completed":
                    assert row["hold"] == "captured", dict(row)
                    assert row["captured_amount"] == row["outcome_charge_cents"], dict(row)
                else:
                    assert row["captured_amount"] == 0, dict(row)
            print(
                f"chaos: {len(survivors)} calls on the surviving media booked, "
                f"{len(doomed)} on the killed one settled in {settled_in:.1f} s (failed, "
                f"uncharged), {LATER} queued through a leader kill booked; "
                f"{time.monotonic() - began:.0f} s in all"
            )
        finally:
            for api in apis:
                api.close()
