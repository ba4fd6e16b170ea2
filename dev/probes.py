"""How `make run` tells that a child serves: core answers its gRPC health check, gateway and
media answer `/healthz`, the simulated world accepts connections on every port.

Each probe answers within about a second and never raises: "not yet" is False.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_SEC = 1.0


def local_host(bind_host: str) -> str:
    """The address to reach a server bound to `bind_host` from this machine."""
    return "127.0.0.1" if bind_host in ("", "0.0.0.0", "::") else bind_host


async def grpc_serving(target: str) -> bool:
    """The overall gRPC health of the server at `target` is SERVING."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_SEC)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def http_ok(url: str) -> bool:
    """GET `url` answers 200."""
    async with httpx.AsyncClient(timeout=TIMEOUT_SEC) as client:
        try:
            return (await client.get(url)).status_code == 200
        except httpx.TransportError:
            return False


async def tcp_open(host: str, ports: Sequence[int]) -> bool:
    """Every one of `ports` on `host` accepts a connection."""
    for port in ports:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout=TIMEOUT_SEC
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return True
