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

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core import main as server
from core.settings import Settings
from core.store import database


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


async def _wait_grpc(target: str, proc: asyncio.subprocess.Process) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            if proc.returncode is not None:
                raise RuntimeError(f"core exited with {proc.returncode}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
            await asyncio.sleep(0.05)
    raise RuntimeError("core did not come up")


@contextlib.asynccontextmanager
async def running_stack(*, with_carrier: bool = False, **extra_env: str) -> AsyncIterator[Stack]:
    """PostgreSQL + core + gateway; with_carrier adds media and the simulated carrier."""
    with tempfile.TemporaryDirectory(prefix="callagent-bench-") as tmp:
        data_dir = pathlib.Path(tmp)
        external = os.environ.get("DATABASE_URL")
        settings = Settings(callagent_data_dir=data_dir)
        dsn = await server.prepare_database(settings, external)
        grpc_port, http_port, media_port, sim_port = (free_port() for _ in range(4))
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "CALLAGENT_GRPC_PORT": str(grpc_port),
            "CALLAGENT_HTTP_PORT": str(http_port),
            "CALLAGENT_MEDIA_PORT": str(media_port),
            "CALLAGENT_DATA_DIR": str(data_dir),
            "INTERNAL_TOKEN": "bench-internal-token",
            "TWILIO_ACCOUNT_SID": "AC" + "b" * 32,
            "TWILIO_AUTH_TOKEN": "bench-twilio-token",
            "TWILIO_API_BASE_URL": f"http://127.0.0.1:{sim_port}",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{media_port}",
            "SIM_TWILIO_PORT": str(sim_port),
            **extra_env,
        }
        procs = []
        try:
            if with_carrier:
                for module in ("sim.main", "media.server"):
                    procs.append(
                        await asyncio.create_subprocess_exec(
                            sys.executable,
                            "-m",
                            module,
                            env=env,
                            stdout=asyncio.subprocess.DEVNULL,
                        )
                    )
            core = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "core.main", env=env, stdout=asyncio.subprocess.DEVNULL
            )
            procs.append(core)
            gateway = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.main", env=env
            )
            procs.append(gateway)
            await _wait_http(f"http://127.0.0.1:{http_port}/healthz", gateway)
            await _wait_grpc(f"127.0.0.1:{grpc_port}", core)
            if with_carrier:
                await _wait_http(f"http://127.0.0.1:{media_port}/healthz", procs[1])
            yield Stack(dsn=dsn, grpc_port=grpc_port, http_port=http_port, env=env)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            for proc in procs:
                await proc.wait()
            if external is None:
                database.stop_embedded(data_dir)
