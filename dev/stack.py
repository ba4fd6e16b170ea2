"""`make run`: embedded PostgreSQL (unless DATABASE_URL is set), core, gateway, media,
and the simulated world when no Twilio credentials are set.

The supervisor prepares the database once (migrations, demo customer), then runs
each service as a child process with DATABASE_URL pointing at the same server.
Ctrl-C (or SIGTERM) stops the children, then the embedded server it started. It is the
one place that knows every process, so it reads each one's settings (ports) to print them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from typing import Any

from core import main as server
from core.app import accounts, api_keys
from core.settings import Settings, get_settings
from core.store import database
from gateway.settings import GatewaySettings
from media.settings import MediaSettings
from sim import settings as sim_settings

DEMO_CUSTOMER = "demo"
SERVICES = {"core": "core.main", "gateway": "gateway.main", "media": "media.server"}


def _provider_env(settings: Settings) -> tuple[dict[str, str], list[str]]:
    """Settings every child shares. Each provider without credentials (Twilio, Gemini,
    Deepgram) is replaced by its stand-in in the simulated world, which then runs too."""
    sim = sim_settings.SimSettings()
    env = {
        "INTERNAL_TOKEN": settings.internal_token.get_secret_value()
        if settings.internal_token
        else secrets.token_urlsafe(24)
    }
    simulated: list[str] = []
    if settings.twilio_account_sid is None or settings.twilio_auth_token is None:
        env |= {
            "TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
            "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
            "TWILIO_API_BASE_URL": f"http://127.0.0.1:{sim.sim_twilio_port}",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{MediaSettings().callagent_media_port}",
        }
        simulated.append("Twilio")
    model_env = sim_settings.media_env(sim)
    if not os.environ.get("GEMINI_API_KEY"):
        env |= {k: v for k, v in model_env.items() if k.startswith("GEMINI_")}
        env |= sim_settings.core_env(sim)  # core's post-call classifier asks the sim too
        simulated.append("Gemini")
    if not os.environ.get("DEEPGRAM_API_KEY"):
        env |= {k: v for k, v in model_env.items() if k.startswith("DEEPGRAM_")}
        simulated.append("Deepgram")
    return env, simulated


async def _demo_key(dsn: str, settings: Settings) -> str | None:
    """Create the demo customer's key on first start; None when it already exists."""
    conn = await database.connect(dsn)
    try:
        if await accounts.customer_named(conn, DEMO_CUSTOMER) is not None:
            return None
        created = await api_keys.create_key(
            conn, DEMO_CUSTOMER, quota_limit=settings.default_quota_limit
        )
        return created.api_key
    finally:
        await conn.close()


async def _supervise(settings: Settings) -> int:
    dsn = await server.prepare_database(settings)
    demo_key = await _demo_key(dsn, settings)
    provider_env, simulated = _provider_env(settings)
    env = {**os.environ, **provider_env, "DATABASE_URL": dsn}
    children: dict[str, asyncio.subprocess.Process] = {}
    services = {**SERVICES, **({"sim": "sim.main"} if simulated else {})}
    for name, module in services.items():
        children[name] = await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env)
    media_port = MediaSettings().callagent_media_port
    print(f"gateway: http://127.0.0.1:{GatewaySettings().callagent_http_port}", flush=True)
    print(f"core gRPC: {settings.callagent_bind_host}:{settings.callagent_grpc_port}", flush=True)
    print(f"media (Twilio webhooks): http://127.0.0.1:{media_port}", flush=True)
    if simulated:
        print(f"simulated world stands in for: {', '.join(simulated)} (no credentials)", flush=True)
    if demo_key:
        print(f"demo customer API key (shown once): {demo_key}", flush=True)
    else:
        print("demo customer exists; new key: callagent keys create --customer demo", flush=True)
    print("Ctrl-C stops everything.", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits: dict[asyncio.Task[Any], str] = {
        asyncio.create_task(proc.wait()): name for name, proc in children.items()
    }
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopper, *waits}, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    for task in done:
        if task in waits:
            print(f"{waits[task]} exited with {task.result()}; stopping the rest", flush=True)
            exit_code = 1
    stopper.cancel()
    for proc in children.values():
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in children.items():
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            print(f"{name} did not stop in 10 s; killing it", flush=True)
            proc.kill()
            await proc.wait()
    return exit_code


def main() -> None:
    settings = get_settings()
    try:
        code = asyncio.run(_supervise(settings))
    finally:
        if settings.database_url is None:
            database.stop_embedded(settings.callagent_data_dir)
            print("embedded PostgreSQL stopped", flush=True)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
