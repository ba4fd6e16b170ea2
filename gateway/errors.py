"""gRPC status → HTTP error response, by the ErrorInfo reason core attached.

Core puts the contract's HTTP status in ErrorInfo.metadata["http_status"], so this
module needs no per-reason table; it only falls back by gRPC code for errors that
carry no ErrorInfo (core unreachable, deadline, UNIMPLEMENTED).
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from gateway.responses import JsonResponse

_DETAILS_KEY = "grpc-status-details-bin"
_FALLBACK: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.UNAUTHENTICATED: (401, "UNAUTHENTICATED_KEY"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "PERMISSION_DENIED"),
    grpc.StatusCode.NOT_FOUND: (404, "NOT_FOUND"),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "INVALID_ARGUMENT"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "NOT_IMPLEMENTED"),
    grpc.StatusCode.UNAVAILABLE: (503, "CORE_UNAVAILABLE"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "CORE_TIMEOUT"),
}


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    for key, value in err.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    return None


def http_error(status: int, code: str, message: str, **extra: str | None) -> JsonResponse:
    return JsonResponse({"detail": {"code": code, "message": message, **extra}}, status_code=status)


def from_rpc_error(err: grpc.aio.AioRpcError) -> JsonResponse:
    info = error_info(err)
    message = err.details() or ""
    if info is not None:
        extra = dict(info.metadata)
        status = int(extra.pop("http_status", "500"))
        code = extra.pop("code", info.reason)
        return http_error(status, code, message, **extra)
    status, code = _FALLBACK.get(err.code(), (500, "INTERNAL"))
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        message = "the core service is unavailable; retry shortly"
    elif status == 500:
        message = "internal error"
    return http_error(status, code, message)
