"""The public REST/SSE gateway: the contract's routes mapped 1:1 onto core's gRPC services.

No business rule lives here. Each route (one module per resource under
`gateway.routes`) turns headers into gRPC metadata, the body into a request message,
and the reply (or the ErrorInfo of a failure) into the contract's JSON. This module
only assembles the app: one gRPC channel to core shared by all requests, the
gRPC-error handler, the SSE stream cap and the routers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import Response

from gateway.errors import from_rpc_error
from gateway.routes import bookings, call_streams, calls, skills, users
from gateway.settings import GatewaySettings, get_settings
from gateway.stubs import CHANNEL_OPTIONS, Stubs


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = grpc.aio.insecure_channel(settings.grpc_target, options=CHANNEL_OPTIONS)
        app.state.stubs = Stubs(channel)
        try:
            yield
        finally:
            await channel.close()

    app = FastAPI(title="AI Call Agent", version="0.1.0", lifespan=lifespan)
    app.state.sse_slots = call_streams.StreamSlots(
        settings.sse_max_streams, settings.sse_heartbeat_sec
    )

    @app.exception_handler(grpc.aio.AioRpcError)
    async def _rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> Response:
        return from_rpc_error(exc)

    for module in (users, bookings, calls, call_streams, skills):
        app.include_router(module.router)

    @app.get("/healthz", tags=["ops"], summary="Gateway liveness (not part of the contract)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
