"""The gateway's `/readyz` follows core's gRPC health: ready while a real core serves, 503
while core drains or is gone, ready again once a core answers on the same address; `/healthz`
(liveness) stays 200 throughout, so a core outage never gets the gateway restarted."""

from __future__ import annotations

import httpx

from core import main as server
from gateway.app import create_app as create_gateway
from tests.conftest import eventually, free_port, make_gateway_settings, make_settings, serve_asgi
from tests.fakes.telephony import FakeTelephony


async def _start_core(dsn: str, port: int) -> server.Core:
    return await server.start(make_settings(), dsn=dsn, port=port, telephony=FakeTelephony())


async def test_readyz_follows_core_health(db_dsn: str) -> None:
    port = free_port()
    core = await _start_core(db_dsn, port)
    running = [core]
    try:
        gateway = create_gateway(make_gateway_settings(port))
        async with serve_asgi(gateway) as url, httpx.AsyncClient(base_url=url) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "core": "SERVING"}

            await core.health.enter_graceful_shutdown()  # what a SIGTERMed core does first
            draining = await http.get("/readyz")
            assert draining.status_code == 503
            assert draining.json() == {"status": "unready", "core": "NOT_SERVING"}

            await running.pop().stop(grace=1)
            gone = await http.get("/readyz")
            assert gone.status_code == 503
            assert gone.json()["status"] == "unready"
            assert gone.json()["core"] in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
            assert (await http.get("/healthz")).status_code == 200

            running.append(await _start_core(db_dsn, port))

            async def ready_again() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready_again, limit=10)
    finally:
        for left in running:
            await left.stop(grace=1)


async def test_readyz_is_503_when_core_never_answered() -> None:
    gateway = create_gateway(make_gateway_settings(free_port()))
    async with serve_asgi(gateway) as url, httpx.AsyncClient(base_url=url) as http:
        reply = await http.get("/readyz")
        assert reply.status_code == 503
        assert reply.json()["core"] in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
        assert (await http.get("/healthz")).status_code == 200
