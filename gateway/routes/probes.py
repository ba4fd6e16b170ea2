"""`/healthz` and `/readyz`: the orchestrator's probes (not part of the public contract).

Liveness says only that the process serves HTTP, so a slow or restarting core never gets a
healthy gateway killed. Readiness asks core's gRPC health service: a gateway whose core does
not answer could only turn every request into a 503, so it is taken out of the load balancer
until core answers again.
"""

from __future__ import annotations

import grpc
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2

from gateway.stubs import Core

router = APIRouter(tags=["ops"])

# Well inside a probe's timeout (deploy/ sets 3 s): a core that cannot answer a health
# check in a second is not ready for traffic either.
READY_TIMEOUT_SEC = 1.0


@router.get("/healthz", summary="Gateway liveness (not part of the contract)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Gateway readiness: core answers its health check")
async def readyz(core: Core) -> JSONResponse:
    try:
        reply = await core.health.Check(
            health_pb2.HealthCheckRequest(service=""), timeout=READY_TIMEOUT_SEC
        )
    except grpc.aio.AioRpcError as exc:
        return JSONResponse({"status": "unready", "core": exc.code().name}, status_code=503)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return JSONResponse({"status": "unready", "core": status}, status_code=503)
    return JSONResponse({"status": "ready", "core": status})
