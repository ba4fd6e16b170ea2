"""`make run`: embedded PostgreSQL (unless DATABASE_URL is set), core, gateway, media,
and the simulated world when no Twilio credentials are set.

It prepares the database once (migrations, demo customer), then runs each service as a
child process with DATABASE_URL pointing at the same server, under `dev.supervisor`: a child
that dies is restarted, one that fails before it ever served stops the stack. The addresses
and the demo key are printed once every child serves. Ctrl-C (or SIGTERM) stops the
children, then the embedded server it started. It is the one place that knows every
process, so it reads each one's settings (ports) to probe and print them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys

from core import main as server
from core.app import accounts, api_keys
from core.settings import Settings, get_settings
from core.store import database
from dev import probes, supervisor
from gateway.settings import GatewaySettings
from media.settings import MediaSettings
from sim import settings as sim_settings

DEMO_CUSTOMER = "demo"


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


def _services(settings: Settings, simulated: bool) -> list[supervisor.Service]:
    """Every child with its readiness probe, read from each process's own settings."""
    core_target = (
        f"{probes.local_host(settings.callagent_bind_host)}:{settings.callagent_grpc_port}"
    )
    gateway = GatewaySettings()
    gateway_url = (
        f"http://{probes.local_host(gateway.callagent_bind_host)}:{gateway.callagent_http_port}"
    )
    media = MediaSettings()
    media_url = (
        f"http://{probes.local_host(media.callagent_bind_host)}:{media.callagent_media_port}"
    )
    services = [
        supervisor.Service("core", _command("core.main"), lambda: probes.grpc_serving(core_target)),
        supervisor.Service(
            "gateway", _command("gateway.main"), lambda: probes.http_ok(f"{gateway_url}/healthz")
        ),
        supervisor.Service(
            "media", _command("media.server"), lambda: probes.http_ok(f"{media_url}/healthz")
        ),
    ]
    if simulated:
        sim = sim_settings.SimSettings()
        # Its plain-HTTP servers, the last of which opens after the Gemini Live (TLS) one.
        ports = (sim.sim_twilio_port, sim.sim_gemini_rest_port, sim.sim_deepgram_http_port)
        services.append(
            supervisor.Service(
                "sim", _command("sim.main"), lambda: probes.tcp_open("127.0.0.1", ports)
            )
        )
    return services


def _command(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def _announce(settings: Settings, simulated: list[str], demo_key: str | None) -> None:
    """What an operator needs, printed once every child serves."""
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


async def _supervise(settings: Settings) -> int:
    dsn = await server.prepare_database(settings)
    demo_key = await _demo_key(dsn, settings)
    provider_env, simulated = _provider_env(settings)
    # Media's drain fits inside the stop's 10 s wait per child (a pod's default is 30 s).
    env = {"MEDIA_DRAIN_SEC": "5", **os.environ, **provider_env, "DATABASE_URL": dsn}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children = supervisor.Supervisor(_services(settings, bool(simulated)), env)
    return await children.run(stop, lambda: _announce(settings, simulated, demo_key))


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
