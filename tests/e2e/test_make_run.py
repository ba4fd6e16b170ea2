"""`make run` dials a venue from the user's own scenario file, with no code changes.

The real `python -m dev.stack` as a child process, as an operator starts it: a fresh data
dir (embedded PostgreSQL, migrations, the demo key printed once), core, gateway, media and the
simulated world, every port chosen here, no provider credentials, `SIM_SCENARIOS_DIR` naming
a folder with one file. The call goes through the public REST API only. A malformed file must
stop the whole stack with the file, line and reason. A core killed with SIGKILL comes back
on its own while the others keep running, and a Ctrl-C that reaches the whole process group
restarts nothing. Either way the stack is stopped with the signal Ctrl-C sends, and nothing
it started may outlive it (the embedded server included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest

from core.store import database
from tests.conftest import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
TERMINAL = {"completed", "busy", "no_answer", "failed", "cancelled"}
# Every listening port of the stack's processes (core, gateway, media, sim); the embedded
# PostgreSQL listens on a Unix socket in its own data dir only.
PORTS = (
    "CALLAGENT_GRPC_PORT",
    "CALLAGENT_HTTP_PORT",
    "CALLAGENT_MEDIA_PORT",
    "SIM_TWILIO_PORT",
    "SIM_GEMINI_PORT",
    "SIM_DEEPGRAM_PORT",
    "SIM_DEEPGRAM_HTTP_PORT",
    "SIM_GEMINI_REST_PORT",
)
# Inherited settings that would point the stack elsewhere or at real providers.
STRIPPED = ("TWILIO_", "GEMINI_", "DEEPGRAM_", "CALLAGENT_", "SIM_", "ANALYSIS_")
STRIPPED_NAMES = {"DATABASE_URL", "PUBLIC_BASE_URL", "CORE_GRPC_TARGET", "INTERNAL_TOKEN"}

# None of the ten shipped venues keeps other hours than 12:00-23:00: this one serves
# breakfast only, so the usual evening request is refused with its hours (the default café,
# which would answer an unknown number, books it).
NUMBER = "+15550150"
BREAKFAST_ONLY = f"""\
# Breakfast only: an evening table is refused with the opening hours.
number = "{NUMBER}"
name = "Sunrise Pancake House"
story = "breakfast only (07:00-11:30): refuses evening tables"
language = "en"
host = "Priya"
answering = "human"
manner = "polite"

[hours]
opens = "07:00"
closes = "11:30"

[booking]
behaviour = "as_asked"
max_party = 4
"""

MALFORMED = """\
# A typo on line 7: there is no answering mode "fax".
number = "+15550151"
name = "Broken Bistro"
story = "never starts"
language = "en"
host = "Hugo"
answering = "fax"
manner = "polite"

[hours]
opens = "12:00"
closes = "23:00"

[booking]
behaviour = "as_asked"
"""

# The module each child runs, as `dev/stack.py` starts it (`python -m MODULE`).
CHILDREN = {
    "core.main": "core",
    "gateway.main": "gateway",
    "media.server": "media",
    "sim.main": "sim",
}

pytestmark = pytest.mark.timeout(420)


@dataclasses.dataclass
class Stack:
    """A running `python -m dev.stack` and everything it has printed so far."""

    proc: subprocess.Popen[str]
    lines: list[str] = dataclasses.field(default_factory=list)
    changed: threading.Condition = dataclasses.field(default_factory=threading.Condition)
    started: set[int] = dataclasses.field(default_factory=set)

    def remember_children(self) -> None:
        """Note every process the stack has started, to check later that none outlives it."""
        with contextlib.suppress(psutil.Error):
            kids = psutil.Process(self.proc.pid).children(recursive=True)
            self.started.update(p.pid for p in kids)

    def read(self) -> None:
        """Collect stdout+stderr line by line (a thread: the pipe must never fill up)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def output(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first printed line matching `pattern`; fails on exit or after `timeout`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self.changed:
            while True:
                for line in self.lines[seen:]:
                    if found := regex.search(line):
                        return found
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self.proc.poll() is not None and seen == len(self.lines):
                    # Exited: give the reader a moment to hand over the last lines.
                    if not self.changed.wait(timeout=min(left, 1.0)):
                        pytest.fail(f"stack exited before {pattern!r}:\n" + "\n".join(self.lines))
                    continue
                if left <= 0:
                    pytest.fail(f"no {pattern!r} within {timeout} s:\n" + "\n".join(self.lines))
                self.changed.wait(timeout=left)


def stack_env(data_dir: pathlib.Path, scenarios: pathlib.Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(STRIPPED) and k not in STRIPPED_NAMES
    }
    env |= {name: str(free_port()) for name in PORTS}
    env |= {
        "CALLAGENT_DATA_DIR": str(data_dir),
        "SIM_SCENARIOS_DIR": str(scenarios),
        "SIM_SPEED": "10",  # the venue's pauses, not the audio: that stays real time
        "SIM_WORD_MS": "150",
        "PYTHONUNBUFFERED": "1",
    }
    return env


def leftovers(data_dir: pathlib.Path, pids: set[int]) -> list[str]:
    """Processes the stack started that still run: its children, or a server on data_dir."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.info["pid"] in pids or str(data_dir) in cmdline:
                found.append(f"{proc.info['pid']}: {cmdline}")
        except psutil.Error:
            continue
    return found


@contextlib.contextmanager
def make_run(scenarios: pathlib.Path) -> Iterator[Stack]:
    """Start the stack; on the way out stop it like Ctrl-C and prove nothing is left."""
    # Not under tmp_path: as root the embedded server runs as its own user, which cannot
    # enter pytest's private temp folders (tests/conftest.py does the same).
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="callagent-make-run-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dev.stack"],
        cwd=ROOT,
        env=stack_env(data_dir, scenarios),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a stuck stack can be killed as one group, by its id
    )
    stack = Stack(proc)
    reader = threading.Thread(target=stack.read, daemon=True)
    reader.start()
    try:
        yield stack
    finally:
        stack.remember_children()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            database.stop_embedded(data_dir)
            pytest.fail(f"make run ignored Ctrl-C for 60 s:\n{stack.output()}")
        reader.join(timeout=10)
        if not poll(lambda: not leftovers(data_dir, stack.started), timeout=15, fail=False):
            stray = leftovers(data_dir, stack.started)
            database.stop_embedded(data_dir)
            pytest.fail(f"left running after make run stopped: {stray}\n{stack.output()}")
        assert not (data_dir / "pgdata" / "postmaster.pid").exists(), stack.output()
        shutil.rmtree(data_dir, ignore_errors=True)


def poll(check: Callable[[], Any], *, timeout: float, fail: bool = True) -> Any:
    """`check()` every 0.25 s until it returns something truthy, and return that; after
    `timeout` fail the test (or, with `fail=False`, return the last falsy answer)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() >= deadline:
            if not found and fail:
                pytest.fail(f"{check.__name__} not true within {timeout} s")
            return found
        time.sleep(0.25)


def ready(stack: Stack) -> tuple[str, str]:
    """Wait until every process serves; return the gateway URL and the demo API key."""
    gateway = stack.wait_for(r"^gateway: (http://\S+)$", timeout=120)[1]
    key = stack.wait_for(r"^demo customer API key \(shown once\): (\S+)$", timeout=10)[1]
    media = stack.wait_for(r"^media \(Twilio webhooks\): (http://\S+)$", timeout=10)[1]
    stack.wait_for(r"^sim: 11 venues \+ the default", timeout=60)  # ten shipped + ours
    stack.wait_for(r"^sim: core env ANALYSIS_BASE_URL=", timeout=60)  # its ports are open

    def serving() -> bool:
        with contextlib.suppress(httpx.TransportError):
            me = httpx.get(f"{gateway}/users/me", headers={"X-API-Key": key}, timeout=5)
            up = httpx.get(f"{media}/healthz", timeout=5)
            return me.status_code == 200 and up.status_code == 200
        assert stack.proc.poll() is None, stack.output()
        return False

    poll(serving, timeout=90)
    stack.remember_children()
    return gateway, key


def place(gateway: str, key: str, brief: str) -> dict[str, Any]:
    """POST /calls, then GET /calls/{id} until it has ended with an outcome."""
    headers = {"X-API-Key": key}
    body = {
        "target_phone": NUMBER,
        "brief": brief,
        "language": "en",
        "kind": "restaurant_booking",
        "ask_user_mode": "stream",
    }
    with httpx.Client(base_url=gateway, headers=headers, timeout=10) as api:
        started = api.post("/calls", json=body)
        assert started.status_code == 201, started.text
        call_id = started.json()["call"]["call_id"]

        def ended() -> dict[str, Any] | None:
            call: dict[str, Any] = api.get(f"/calls/{call_id}").json()
            done = call["status"] in TERMINAL
            return (
                call if done and (call["outcome_type"] or call["status"] != "completed") else None
            )

        call: dict[str, Any] = poll(ended, timeout=180)
        listed = api.get("/v1/booking/bookings", params={"limit": 100}).json()
        call["booking"] = next((b for b in listed if b["call_id"] == call_id), None)
        return call


def cli_call(gateway: str, key: str, brief: str) -> dict[str, Any]:
    """`callagent call NUMBER BRIEF --json` until the call ends; its final record."""
    env = {**os.environ, "CALLAGENT_API_URL": gateway, "CALLAGENT_API_KEY": key}
    command = [sys.executable, "-m", "cli.main", "call", NUMBER, brief, "--json"]
    command += ["--language", "en", "--kind", "restaurant_booking"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    last = json.loads(done.stdout.splitlines()[-1])
    assert last["event"] == "final", done.stdout
    return dict(last["data"])


def test_a_users_scenario_file_is_dialled_on_make_run(tmp_path: pathlib.Path) -> None:
    scenarios = tmp_path / "my-venues"
    scenarios.mkdir()
    (scenarios / "sunrise-pancake-house.toml").write_text(BREAKFAST_ONLY, encoding="utf-8")
    with make_run(scenarios) as stack:
        stack.wait_for(r"^simulated world stands in for: Twilio, Gemini, Deepgram", timeout=120)
        gateway, key = ready(stack)
        call = place(gateway, key, "Table for 2 tomorrow at 19:00 under Anna")
        summary = f"{call['outcome_summary']}\n{stack.output()}"
        assert call["status"] == "completed", summary
        assert call["outcome_type"] == "refused", summary
        assert call["booking"] is not None and call["booking"]["status"] == "cancelled", summary
        reason = call["booking"]["refusal_reason"]
        assert reason == "we are only open from 07:00 to 11:30", call["booking"]
        heard = " ".join(
            line["text"] for line in call["transcript_full"] if line["speaker"] == "callee"
        )
        assert "Sunrise Pancake House" in heard and "Priya" in heard, call["transcript_full"]
        # An operator's way in: the terminal client, same stack; a morning table is booked.
        final = cli_call(gateway, key, "Table for 2 tomorrow at 08:30 under Anna")
        assert final["call"]["outcome_type"] == "booked", final["call"]["outcome_summary"]
        booking = final["booking"]
        assert booking["venue_name"] == "Sunrise Pancake House", booking
        assert "T08:30" in (booking["booking_date"] or "") and booking["guests"] == 2, booking
    assert stack.proc.returncode == 0, stack.output()
    assert stack.output().splitlines()[-1] == "embedded PostgreSQL stopped"


def test_a_malformed_scenario_file_stops_make_run_with_file_line_and_reason(
    tmp_path: pathlib.Path,
) -> None:
    scenarios = tmp_path / "my-venues"
    scenarios.mkdir()
    bad = scenarios / "broken-bistro.toml"
    bad.write_text(MALFORMED, encoding="utf-8")
    with make_run(scenarios) as stack:
        refused = stack.wait_for(r"^sim: scenario file refused: (.*)$", timeout=120)[1]
        assert refused.startswith(f"{bad}:7: answering: 'fax' is not one of ['human', "), refused
        stack.wait_for(r"^sim exited with 1; stopping the rest$", timeout=30)
        stack.proc.wait(timeout=60)
    assert stack.proc.returncode == 1, stack.output()
    assert stack.output().splitlines()[-1] == "embedded PostgreSQL stopped"


def children(stack: Stack) -> dict[str, int]:
    """The stack's live children by service name (the embedded server is not one of them)."""
    found = {}
    for kid in psutil.Process(stack.proc.pid).children():
        with contextlib.suppress(psutil.Error):
            cmdline = kid.cmdline()
            if kid.status() != psutil.STATUS_ZOMBIE and "-m" in cmdline:
                module = cmdline[cmdline.index("-m") + 1]
                if module in CHILDREN:
                    found[CHILDREN[module]] = kid.pid
    return found


def test_make_run_restarts_a_killed_core_and_the_rest_keep_running(tmp_path: pathlib.Path) -> None:
    scenarios = tmp_path / "my-venues"
    scenarios.mkdir()
    (scenarios / "sunrise-pancake-house.toml").write_text(BREAKFAST_ONLY, encoding="utf-8")
    with make_run(scenarios) as stack:
        gateway, key = ready(stack)
        before = children(stack)
        assert set(before) == {"core", "gateway", "media", "sim"}, before
        os.kill(before["core"], signal.SIGKILL)
        stack.wait_for(r"^core exited with -9 \(SIGKILL\); restarting in 0\.5 s$", timeout=30)
        stack.wait_for(r"^core restarted \(pid \d+, restart 1\)$", timeout=30)
        back = int(stack.wait_for(r"^core is serving again \(pid (\d+)\)$", timeout=90)[1])

        def me() -> bool:
            with contextlib.suppress(httpx.TransportError):
                got = httpx.get(f"{gateway}/users/me", headers={"X-API-Key": key}, timeout=5)
                return got.status_code == 200
            return False

        poll(me, timeout=30)
        stack.remember_children()
        after = children(stack)
        assert after["core"] == back != before["core"], stack.output()
        assert {n: p for n, p in after.items() if n != "core"} == {
            n: p for n, p in before.items() if n != "core"
        }, stack.output()
        # Ctrl-C in a terminal signals the whole process group: the children's own exits
        # must not be taken for crashes (no restart), and everything stops.
        said = len(stack.output().splitlines())
        os.killpg(stack.proc.pid, signal.SIGINT)
        stack.proc.wait(timeout=60)
        stack.wait_for(r"^embedded PostgreSQL stopped$", timeout=10)
        assert not [line for line in stack.output().splitlines()[said:] if "exited with" in line], (
            stack.output()
        )
    assert stack.proc.returncode == 0, stack.output()
    assert stack.output().splitlines()[-1] == "embedded PostgreSQL stopped"


def test_a_core_killed_during_15_live_calls_on_make_run_loses_none(tmp_path: pathlib.Path) -> None:
    """kill -9 of core while 15 calls talk: make run restarts it, media re-attaches every
    call's session to the new core, and every call ends booked as if nothing happened."""
    scenarios = tmp_path / "my-venues"
    scenarios.mkdir()
    (scenarios / "sunrise-pancake-house.toml").write_text(BREAKFAST_ONLY, encoding="utf-8")
    numbers = [f"+155501{60 + n}" for n in range(15)]  # the default venue: books as asked
    with make_run(scenarios) as stack:
        gateway, key = ready(stack)
        with httpx.Client(base_url=gateway, headers={"X-API-Key": key}, timeout=10) as api:
            limits = api.put("/users/me/limits", json={"max_concurrent_calls": len(numbers)})
            assert limits.status_code == 200, limits.text
            ids = []
            for number in numbers:
                body = {
                    "target_phone": number,
                    "brief": "Table for 2 tomorrow at 19:00 under Anna",
                    "language": "en",
                    "kind": "restaurant_booking",
                    "ask_user_mode": "stream",
                }
                started = api.post("/calls", json=body)
                assert started.status_code == 201, started.text
                ids.append(started.json()["call"]["call_id"])

            def statuses() -> list[str]:
                return [api.get(f"/calls/{i}").json()["status"] for i in ids]

            def all_talking() -> bool:
                return all(s == "in_progress" for s in statuses())

            poll(all_talking, timeout=120)
            os.kill(children(stack)["core"], signal.SIGKILL)
            stack.wait_for(r"^core is serving again \(pid \d+\)$", timeout=90)

            def all_ended() -> list[dict[str, Any]] | None:
                with contextlib.suppress(httpx.TransportError):
                    calls = [api.get(f"/calls/{i}").json() for i in ids]
                    if all(c.get("status") in TERMINAL and c.get("outcome_type") for c in calls):
                        return calls
                return None

            calls: list[dict[str, Any]] = poll(all_ended, timeout=240)
            booked = {
                b["call_id"] for b in api.get("/v1/booking/bookings", params={"limit": 100}).json()
            }
        lost = [
            (c["call_id"], c["status"], c["outcome_type"])
            for c in calls
            if c["outcome_type"] != "booked"
        ]
        assert not lost, f"{lost}\n{stack.output()}"
        assert set(ids) <= booked, stack.output()
