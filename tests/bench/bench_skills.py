"""Replayed skill runs: POST /skills/{id}/run with an Idempotency-Key that already
succeeded, through gateway → core → PostgreSQL, at 32 concurrent clients.

A replay is one indexed read of the stored response. Target: ≥ 1,000 replays/s.
"""

from __future__ import annotations

import asyncio

import orjson

from core.app import api_keys
from core.store import database
from tests.bench.load import Result, closed_loop, http_get_worker
from tests.bench.stack import running_stack

CLIENTS = 32
SECONDS = 8.0
BODY = orjson.dumps(
    {
        "venue_phone": "+15550100",
        "date": "2030-06-14",
        "time": "19:00",
        "party_size": 4,
        "name": "Anna",
        "ask_user_mode": "stream",
    }
)


async def run() -> tuple[Result, Result]:
    async with running_stack(with_carrier=True, SIM_TALK_SECONDS="600") as stack:
        conn = await database.connect(stack.dsn)
        key = (await api_keys.create_key(conn, "skills", quota_limit=10**9)).api_key
        await conn.close()
        headers = {"X-API-Key": key, "Idempotency-Key": "bench-replay"}
        first = http_get_worker(
            stack.http_port,
            "/skills/restaurant_booking/run",
            headers,
            method="POST",
            body=BODY,
            ok=(b"201",),
        )
        once = await closed_loop("first run", 1, 0.2, first)
        replays = await closed_loop(
            "replayed POST /skills/restaurant_booking/run",
            CLIENTS,
            SECONDS,
            http_get_worker(
                stack.http_port,
                "/skills/restaurant_booking/run",
                headers,
                method="POST",
                body=BODY,
                ok=(b"201",),
            ),
        )
    return once, replays


def main() -> None:
    once, replays = asyncio.run(run())
    print(f"first run: p50 {once.pct(50):.1f} ms")
    print(replays.line())
    print(
        f"skills: {replays.rps:,.0f} replays/s (target ≥ 1,000), p99 {replays.pct(99):.1f} ms, "
        f"non-201 {replays.errors}"
    )


if __name__ == "__main__":
    main()
