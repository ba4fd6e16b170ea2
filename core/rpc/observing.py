"""The outermost server interceptor: count and time every RPC, trace it, tag its log lines.

It wraps the handler the auth/error interceptor returns, so it sees the final status of each
call (an error mapped there arrives here as the abort it became). The span is a child of the
caller's `traceparent` (gateway or media), and a request naming a call binds its `call_id`
for every line logged while serving it. Health and reflection are left alone: probes would
drown the series that matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from opentelemetry import trace

from common import logs, metrics, tracing
from core.rpc import handlers

_SKIPPED = ("/grpc.health.", "/grpc.reflection.")
_CODES = {code.value[0]: code.name for code in grpc.StatusCode}


def _code_of(context: grpc.aio.ServicerContext[Any, Any], failed: BaseException | None) -> str:
    if isinstance(failed, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return _CODES.get(code, "UNKNOWN")
    return "OK" if failed is None else "UNKNOWN"


class _Observed:
    """One served call: its span, its clock and its final accounting."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext[Any, Any], request: Any):
        self.method = method
        self.context = context
        self.span = tracing.rpc_span("core", method, context.invocation_metadata())
        self.start = time.perf_counter()
        call_id = getattr(request, "call_id", None)
        if isinstance(call_id, str) and call_id:
            self.span.set_attribute("callagent.call_id", call_id)
            logs.bind(call_id=call_id)

    def finish(self, failed: BaseException | None) -> None:
        code = _code_of(self.context, failed)
        metrics.GRPC_LATENCY.labels(self.method).observe(time.perf_counter() - self.start)
        metrics.GRPC_REQUESTS.labels(self.method, code).inc()
        self.span.set_attribute("rpc.grpc.status_code", code)
        if code not in ("OK", "CANCELLED"):
            self.span.set_status(trace.StatusCode.ERROR, code)
        self.span.end()


@contextlib.contextmanager
def _observing(
    method: str, context: grpc.aio.ServicerContext[Any, Any], request: Any
) -> Iterator[None]:
    """One call served inside its span, accounted for however it ends."""
    seen = _Observed(method, context, request)
    failed: BaseException | None = None
    try:
        with trace.use_span(seen.span, end_on_exit=False):
            yield
    except BaseException as exc:
        failed = exc
        raise
    finally:
        seen.finish(failed)


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(_SKIPPED):
            return handler

        def unary(inner: Any) -> handlers.Unary:
            async def observed(request: Any, context: handlers.Ctx) -> Any:
                with _observing(method, context, request):
                    return await inner(request, context)

            return observed

        def streaming(inner: Any) -> handlers.Streaming:
            async def observed(request: Any, context: handlers.Ctx) -> AsyncIterator[Any]:
                with _observing(method, context, request):
                    async for item in inner(request, context):
                        yield item

            return observed

        return handlers.rewrap(handler, unary, streaming)
