"""POST /calls end to end against the simulated carrier, and the drainer's pacing.

1. 32 concurrent clients POST /calls through gateway → core → PostgreSQL → the twilio
   SDK → the simulated carrier (whose callbacks flow back through media into core).
   Target on the 2-core dev box: ≥ 200 calls/s accepted, p99 ≤ 50 ms.
2. Queued mode at DIAL_CPS=5 for 30 s: dials actually placed vs. 5/s.
   Target: pacing error ≤ 2 %.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time

from core import main as server
from core.app import api_keys
from core.domain.tasks import StartRequest
from core.settings import Settings
from core.store import database
from tests.bench.load import Result, closed_loop, http_get_worker
from tests.bench.stack import running_stack
from tests.fakes.telephony import FakeTelephony

CLIENTS = 32
SECONDS = 8.0
PACING_CPS = 5.0
PACING_SECONDS = 30.0
BODY = json.dumps({"target_phone": "+15550100", "brief": "Table for 2 at 19:00"}).encode()


async def post_calls() -> Result:
    # The carrier holds answered lines silently: this measures the call API and dialing,
    # not hundreds of simultaneous conversations (bench_media covers those).
    async with running_stack(
        with_carrier=True, SIM_TALK_SECONDS="600", SIM_MEDIA_STREAMS="false"
    ) as stack:
        conn = await database.connect(stack.dsn)
        keys = []
        for i in range(CLIENTS + 1):
            created = await api_keys.create_key(conn, f"bench-{i}", quota_limit=10_000_000)
            keys.append(created.api_key)
        await conn.execute("UPDATE customers SET max_concurrent_calls = 100")
        await conn.close()
        workers = iter(keys)

        def make_worker():  # type: ignore[no-untyped-def]
            return http_get_worker(
                stack.http_port,
                "/calls",
                {"X-API-Key": next(workers)},
                method="POST",
                body=BODY,
                ok=(b"201",),
            )()

        await closed_loop("warm", 1, 1.0, make_worker)
        # each worker is its own customer so caps never bind: this measures throughput
        return await closed_loop("POST /calls (direct, sim carrier)", CLIENTS, SECONDS, make_worker)


class TimedTelephony(FakeTelephony):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def dial(self, call_id: str, to: str) -> str:
        self.times.append(time.monotonic())
        return await super().dial(call_id, to)


async def pacing() -> tuple[float, float, int]:
    async with running_stack() as stack:
        telephony = TimedTelephony()
        settings = Settings(
            call_queue_enabled=True,
            dial_cps=PACING_CPS,
            callagent_grpc_port=0,
            drainer_poll_sec=0.05,
            internal_token="x",
        )
        core = await server.start(settings, dsn=stack.dsn, port=0, telephony=telephony)
        try:
            total = int(PACING_CPS * PACING_SECONDS) + 40
            async with core.pool.acquire() as conn:
                customer = await api_keys.create_key(conn, "pacing", quota_limit=10_000_000)
            await core.pool.execute("UPDATE customers SET max_concurrent_calls = 100")
            for _ in range(total):
                await core.calls.enqueue(customer.customer_id, StartRequest("+15550100", "x"))
            await asyncio.sleep(PACING_SECONDS + 2)
        finally:
            await core.stop(grace=1)
    times = telephony.times
    window = [t for t in times if t - times[0] < PACING_SECONDS]
    rate = (len(window) - 1) / (window[-1] - window[0])
    gaps = [b - a for a, b in itertools.pairwise(window)]
    return rate, statistics.pstdev(gaps) * 1000, len(window)


def main() -> None:
    result = asyncio.run(post_calls())
    print(result.line())
    print(
        f"calls: {result.rps:,.0f} accepted/s (target ≥ 200), p99 {result.pct(99):.1f} ms "
        f"(target ≤ 50), non-201 answers {result.errors}"
    )
    rate, jitter_ms, dials = asyncio.run(pacing())
    error = abs(rate - PACING_CPS) / PACING_CPS * 100
    print(
        f"drainer pacing: {dials} dials in {PACING_SECONDS:.0f} s at DIAL_CPS={PACING_CPS:g} → "
        f"{rate:.3f}/s, error {error:.2f} % (target ≤ 2 %), interval jitter σ {jitter_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
