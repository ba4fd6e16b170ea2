"""The public REST/SSE gateway: the contract's routes mapped 1:1 onto core's gRPC services.

No business rule lives here. Each route (one module per resource under
`gateway.routes`) turns headers into gRPC metadata, the body into a request message,
and the reply (or the ErrorInfo of a failure) into the contract's JSON. This module
only assembles the app: one gRPC channel to core shared by all requests, the error
handlers (every failure in the contract's error shape), the body cap and method guard
(`gateway.guards`), the SSE stream cap, the routers (the contract's, and the probes'), and
`/metrics` with the request series and spans around everything (`docs/observability.md`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from common import logs, tracing
from common.http_metrics import HttpMetrics, metrics_endpoint
from gateway import errors
from gateway.guards import BodyCap, MethodGuard
from gateway.inputs import Rejected
from gateway.routes import bookings, call_streams, calls, probes, skills, users
from gateway.settings import GatewaySettings, get_settings
from gateway.stubs import CHANNEL_OPTIONS, Stubs


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = grpc.aio.insecure_channel(
            settings.grpc_target,
            options=CHANNEL_OPTIONS,
            interceptors=tracing.client_interceptors(),
        )
        app.state.stubs = Stubs(channel)
        try:
            yield
        finally:
            await channel.close()

    app = FastAPI(
        title="AI Call Agent",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(_bind_call)],
    )
    app.state.sse_slots = call_streams.StreamSlots(
        settings.sse_max_streams, settings.sse_heartbeat_sec
    )

    @app.exception_handler(grpc.aio.AioRpcError)
    async def _rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> Response:
        return errors.from_rpc_error(exc)

    @app.exception_handler(Rejected)
    async def _rejected(request: Request, exc: Rejected) -> Response:
        return errors.from_rejected(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return errors.from_validation_error(exc)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return errors.from_http_exception(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return errors.unexpected(request, exc)

    modules = (users, bookings, calls, call_streams, skills, probes)
    for module in modules:
        app.include_router(module.router)

    app.add_api_route("/metrics", metrics_endpoint, include_in_schema=False)
    # The last added runs first: the body cap, before the method guard, routing or parsing.
    route_lists = [app.router.routes, *(module.router.routes for module in modules)]
    app.add_middleware(MethodGuard, route_lists=route_lists)
    app.add_middleware(BodyCap)
    # Outermost: they time and trace every request, a refused one included.
    app.add_middleware(tracing.TraceRequests, process="gateway")
    app.add_middleware(HttpMetrics)
    return app


async def _bind_call(request: Request) -> None:
    """Tag the request's log lines with the call it names (`/v1/calls/{call_id}/…`)."""
    logs.bind(call_id=request.path_params.get("call_id"))
