"""Re-wrapping a gRPC method handler, shared by core's server interceptors.

An aio interceptor that needs to act around each call (not only read its metadata) must
return a new handler of the same shape carrying the same codec. Both interceptors do that
for unary-unary and for streamed responses (unary-stream and stream-stream, whose servicer
methods are async generators over the request or the request iterator); core serves no
stream-unary RPC, so such a handler passes through unwrapped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Unary: TypeAlias = Callable[[Any, Ctx], Awaitable[Any]]
Streaming: TypeAlias = Callable[[Any, Ctx], AsyncIterator[Any]]


def rewrap(
    handler: Any, unary: Callable[[Any], Unary], streaming: Callable[[Any], Streaming]
) -> Any:
    """`handler` with its behaviour replaced by `unary(inner)` or `streaming(inner)`."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **codec)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **codec)
    return handler
