"""Boot a real stack for benchmarks: PostgreSQL, core and gateway as separate processes.

Like `make run`, but in a temporary data dir, on free ports, torn down afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import socket
import sys
import tempfile
from collections.abc import AsyncIterator

import httpx

from core import server
from core.db import database
from core.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Stack:
    dsn: str
    grpc_port: int
    http_port: int
    env: dict[str, str]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


async def _wait_http(url: str, proc: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if proc.returncode is not None:
                raise RuntimeError(f"process exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                await client.get(url)
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextlib.asynccontextmanager
async def running_stack(**extra_env: str) -> AsyncIterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="callagent-bench-") as tmp:
        data_dir = pathlib.Path(tmp)
        external = os.environ.get("DATABASE_URL")
        settings = Settings(callagent_data_dir=data_dir)
        dsn = await server.prepare_database(settings, external)
        grpc_port, http_port = free_port(), free_port()
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "CALLAGENT_GRPC_PORT": str(grpc_port),
            "CALLAGENT_HTTP_PORT": str(http_port),
            "CALLAGENT_DATA_DIR": str(data_dir),
            **extra_env,
        }
        procs = []
        try:
            core = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "core.server", env=env, stdout=asyncio.subprocess.DEVNULL
            )
            procs.append(core)
            gateway = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.main", env=env
            )
            procs.append(gateway)
            await _wait_http(f"http://127.0.0.1:{http_port}/healthz", gateway)
            yield Stack(dsn=dsn, grpc_port=grpc_port, http_port=http_port, env=env)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            for proc in procs:
                await proc.wait()
            if external is None:
                database.stop_embedded(data_dir)
