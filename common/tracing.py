"""OpenTelemetry traces for one call across gateway → core → media, off unless configured.

Spans are made by hand at three places (a gateway request, a core RPC, a media call) rather
than by the grpc/fastapi instrumentation packages: three spans say what a call crossed, and
the hand-made ones keep the per-frame paths free of instrumentation. The W3C `traceparent`
travels in gRPC metadata (the client interceptor here, on the gateway's and media's channels)
and, from core to media, as a `<Parameter>` of the call's `<Stream>` TwiML, which Twilio hands
back in the stream's `start.customParameters`.

With no exporter configured (`OTEL_EXPORTER_OTLP_ENDPOINT` unset) the global tracer provider
stays the API's no-op one: spans cost next to nothing and nothing is propagated. Tests install
an SDK provider with an in-memory exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc
from opentelemetry import context, propagate, trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"


def setup(service_name: str, otlp_endpoint: str | None) -> bool:
    """Export this process's spans over OTLP/gRPC to `otlp_endpoint`; False (tracing stays
    off) without one."""
    if not otlp_endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    log.info("tracing to %s", otlp_endpoint)
    return True


def tracer() -> trace.Tracer:
    return trace.get_tracer("callagent")


def traceparent() -> str | None:
    """The current span's W3C traceparent, None when no span is recording."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def extract(carrier: Mapping[str, str]) -> context.Context:
    """The remote parent a peer sent (an empty context when it sent none)."""
    return propagate.extract(carrier)


def _with_traceparent(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    parent = traceparent()
    if parent is None:
        return details
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add(TRACEPARENT, parent)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_traceparent(details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_traceparent(details), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(_with_traceparent(details), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(_with_traceparent(details), request_iterator)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for a channel to core: each call carries the caller's traceparent."""
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]


class TraceRequests:
    """ASGI middleware: one server span per HTTP request, child of an incoming traceparent,
    named by the route template once routing has run."""

    def __init__(self, app: ASGIApp, process: str) -> None:
        self.app = app
        self.process = process

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with tracer().start_as_current_span(
            f"{self.process} {method}",
            context=extract(headers),
            kind=trace.SpanKind.SERVER,
            attributes={"callagent.process": self.process, "http.request.method": method},
        ) as span:

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    route = scope.get("route")
                    if route is not None and hasattr(route, "path"):
                        span.update_name(f"{self.process} {method} {route.path}")
                        span.set_attribute("http.route", route.path)
                await send(message)

            await self.app(scope, receive, sending)


def rpc_span(process: str, method: str, metadata: Iterable[tuple[str, Any]] | None) -> trace.Span:
    """Start (not enter) a server span for a gRPC call, child of the caller's traceparent."""
    carrier = {k: v for k, v in metadata or () if isinstance(v, str)}
    return tracer().start_span(
        f"{process} {method}",
        context=extract(carrier),
        kind=trace.SpanKind.SERVER,
        attributes={"callagent.process": process, "rpc.method": method},
    )
