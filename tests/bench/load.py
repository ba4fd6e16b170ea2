"""A tiny closed-loop load generator: N workers, keep-alive HTTP/1.1 or gRPC calls.

Hand-rolled HTTP so the client costs little CPU next to the servers on a 2-core box.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable


@dataclasses.dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def line(self) -> str:
        mean = statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan")
        return (
            f"{self.name}: {self.rps:,.0f} req/s, mean {mean:.2f} ms, p50 {self.pct(50):.2f} ms,"
            f" p99 {self.pct(99):.2f} ms, errors {self.errors}"
        )


async def closed_loop(
    name: str,
    workers: int,
    seconds: float,
    make_worker: Callable[[], Awaitable[Callable[[], Awaitable[bool]]]],
) -> Result:
    """Run `workers` loops of one request at a time each for `seconds`."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal errors
        call = await make_worker()
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            ok = await call()
            latencies.append((time.perf_counter() - start) * 1000)
            if not ok:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(workers)))
    return Result(name, len(latencies), errors, time.perf_counter() - began, latencies)


def http_get_worker(
    port: int,
    path: str,
    headers: dict[str, str],
    *,
    method: str = "GET",
    body: bytes = b"",
    ok: tuple[bytes, ...] = (b"200",),
) -> Callable[[], Awaitable[Callable[[], Awaitable[bool]]]]:
    """One keep-alive connection per worker sending the same request again and again."""
    if body:
        headers = {**headers, "Content-Type": "application/json", "Content-Length": str(len(body))}
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    request = head.encode() + body

    async def make() -> Callable[[], Awaitable[bool]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def call() -> bool:
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            return status_line.split(b" ", 2)[1] in ok

        return call

    return make
