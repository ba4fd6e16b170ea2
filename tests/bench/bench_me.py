"""GET /users/me through gateway → core → PostgreSQL, beside the same call made directly
over gRPC, at 32 concurrent clients.

Target on the 2-core dev box: ≥ 1,000 req/s, p99 ≤ 25 ms, gateway hop ≤ 1.5× direct gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
from callagent.v1 import accounts_pb2, accounts_pb2_grpc

from core.app import api_keys
from core.store import database
from tests.bench.load import Result, closed_loop, http_get_worker
from tests.bench.stack import running_stack

CLIENTS = 32
SECONDS = 8.0


async def run() -> list[Result]:
    async with running_stack() as stack:
        conn = await database.connect(stack.dsn)
        key = (await api_keys.create_key(conn, "bench", quota_limit=1000)).api_key
        await conn.close()

        # warm-up both paths
        await closed_loop(
            "warm", 8, 1.0, http_get_worker(stack.http_port, "/users/me", {"X-API-Key": key})
        )
        via_gateway = await closed_loop(
            "gateway  GET /users/me",
            CLIENTS,
            SECONDS,
            http_get_worker(stack.http_port, "/users/me", {"X-API-Key": key}),
        )

        channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}")
        stub = accounts_pb2_grpc.AccountServiceStub(channel)
        metadata = (("x-api-key", key),)

        async def make() -> Callable[[], Awaitable[bool]]:
            async def call() -> bool:
                await stub.GetMe(accounts_pb2.GetMeRequest(), metadata=metadata)
                return True

            return call

        direct = await closed_loop("direct   GetMe (gRPC)", CLIENTS, SECONDS, make)
        await channel.close()
    return [via_gateway, direct]


def main() -> None:
    via_gateway, direct = asyncio.run(run())
    print(via_gateway.line())
    print(direct.line())
    ratio = via_gateway.pct(50) / direct.pct(50)
    print(
        f"users/me: {via_gateway.rps:,.0f} req/s (target ≥ 1,000), p99 {via_gateway.pct(99):.1f}"
        f" ms (target ≤ 25), gateway/direct p50 latency {ratio:.2f}× (target ≤ 1.5×)"
    )


if __name__ == "__main__":
    main()
