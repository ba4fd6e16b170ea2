"""1,000 concurrent SSE subscribers on one gateway process and one core, 20 events/s
appended: append-to-delivery latency and the gateway's memory.

Subscribers are spread over CALLS calls (SUBSCRIBERS / CALLS each); every append goes
to the next call in turn, so each event fans out to SUBSCRIBERS / CALLS streams.
Target on the 2-core dev box: p99 ≤ 100 ms, gateway RSS ≤ 300 MB.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import orjson
import psutil

from core.app import api_keys, events
from core.app.calls import CallPolicy, CallService
from core.domain.tasks import StartRequest
from core.store import database
from tests.bench.stack import running_stack
from tests.fakes.telephony import FakeTelephony

SUBSCRIBERS = 1000
CALLS = 10
RATE = 20.0
SECONDS = 15.0


async def subscriber(
    port: int,
    key: str,
    call_id: str,
    latencies: list[float],
    ready: asyncio.Event,
    counter: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /calls/{call_id}/events HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n\r\n".encode()
    )
    status = await reader.readline()
    assert b" 200 " in status, status
    counter[0] += 1
    if counter[0] == SUBSCRIBERS:
        ready.set()
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            # chunked transfer: frames arrive inside chunks; find data lines anywhere
            start = line.find(b"data: ")
            if start >= 0:
                data = orjson.loads(line[start + 6 :])
                if "t" in data:
                    latencies.append((time.time() - data["t"]) * 1000)
    finally:
        writer.close()


async def run() -> tuple[list[float], float, int]:
    async with running_stack() as stack:
        conn = await database.connect(stack.dsn)
        created = await api_keys.create_key(conn, "sse", quota_limit=10**9)
        await conn.execute("UPDATE customers SET max_concurrent_calls = 100")
        pool = await database.create_pool(stack.dsn, 1, 4)
        service = CallService(pool, FakeTelephony(), CallPolicy(100, 10, False, True, "bench"))
        call_ids = []
        for _ in range(CALLS):
            started = await service.start(created.customer_id, StartRequest("+15550100", "x"))
            call_ids.append(started.call["call_id"])  # type: ignore[union-attr]
        gateway = next(
            p
            for p in psutil.Process().children(recursive=True)
            if "gateway.main" in " ".join(p.cmdline())
        )
        latencies: list[float] = []
        ready = asyncio.Event()
        counter = [0]
        tasks = [
            asyncio.create_task(
                subscriber(
                    stack.http_port, created.api_key, call_ids[i % CALLS], latencies, ready, counter
                )
            )
            for i in range(SUBSCRIBERS)
        ]
        async with asyncio.timeout(60):
            await ready.wait()
        await asyncio.sleep(1)
        latencies.clear()
        sent = 0
        began = time.monotonic()
        while time.monotonic() - began < SECONDS:
            async with pool.acquire() as c, c.transaction():
                await events.append(
                    c,
                    call_ids[sent % CALLS],
                    "transcript",
                    {"speaker": "callee", "text": "x", "t": time.time()},
                )
            sent += 1
            await asyncio.sleep(max(0.0, began + sent / RATE - time.monotonic()))
        await asyncio.sleep(1)
        rss = gateway.memory_info().rss / 2**20
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
        await conn.close()
    return latencies, rss, sent


def main() -> None:
    latencies, rss, sent = asyncio.run(run())
    latencies.sort()
    expected = sent * SUBSCRIBERS // CALLS
    p99 = latencies[int(0.99 * len(latencies)) - 1] if latencies else float("nan")
    print(
        f"sse: {SUBSCRIBERS} subscribers on {CALLS} calls, {sent} events at {RATE:g}/s → "
        f"{len(latencies)}/{expected} deliveries, p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {p99:.1f} ms (target ≤ 100), max {latencies[-1]:.1f} ms; "
        f"gateway RSS {rss:.0f} MB (target ≤ 300)"
    )


if __name__ == "__main__":
    main()
