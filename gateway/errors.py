"""Every failure → the contract's error shape `{"detail": {"code", "message", ...}}`.

Core puts the contract's HTTP status in ErrorInfo.metadata["http_status"], so this
module needs no per-reason table. It maps deliberately, by gRPC code, every status that
can arrive without our ErrorInfo (core unreachable, deadline, a message or metadata
past gRPC's size limits, a fault inside grpc), so no gRPC error becomes a bare 500. It
also renders the gateway's own refusals (`inputs.Rejected`), Starlette's HTTP errors
(404, 405, 400 on an unparsable body) and request validation errors, whose FastAPI
`HTTPValidationError` shape the contract requires, with each `input` shortened so a
422 never echoes a large body back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc
import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from google.rpc import error_details_pb2, status_pb2
from starlette.exceptions import HTTPException
from starlette.requests import Request

from gateway.inputs import Rejected
from gateway.responses import JsonResponse

log = logging.getLogger(__name__)

_DETAILS_KEY = "grpc-status-details-bin"
_UPSTREAM = (502, "CORE_ERROR")
# Every gRPC code that can reach us without ErrorInfo; a test checks none is missing.
_FALLBACK: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.CANCELLED: (503, "CORE_CANCELLED"),
    grpc.StatusCode.UNKNOWN: _UPSTREAM,
    grpc.StatusCode.INVALID_ARGUMENT: (400, "INVALID_ARGUMENT"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "CORE_TIMEOUT"),
    grpc.StatusCode.NOT_FOUND: (404, "NOT_FOUND"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "CONFLICT"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "PERMISSION_DENIED"),
    # Without ErrorInfo this is gRPC's own size limit (message or metadata too large).
    grpc.StatusCode.RESOURCE_EXHAUSTED: (413, "REQUEST_TOO_LARGE"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "FAILED_PRECONDITION"),
    grpc.StatusCode.ABORTED: (409, "ABORTED"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "OUT_OF_RANGE"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "NOT_IMPLEMENTED"),
    grpc.StatusCode.INTERNAL: _UPSTREAM,
    grpc.StatusCode.UNAVAILABLE: (503, "CORE_UNAVAILABLE"),
    grpc.StatusCode.DATA_LOSS: _UPSTREAM,
    grpc.StatusCode.UNAUTHENTICATED: (401, "UNAUTHENTICATED_KEY"),
}
_MESSAGES = {
    "CORE_UNAVAILABLE": "the core service is unavailable; retry shortly",
    "CORE_TIMEOUT": "the core service did not answer in time; retry shortly",
    "CORE_CANCELLED": "the request to the core service was cancelled; retry shortly",
    "CORE_ERROR": "the core service failed the request",
    "REQUEST_TOO_LARGE": "the request is too large (a header, field or body past its limit)",
}
# Starlette's own HTTP errors (no route, wrong method, unparsable body) by status.
_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
}
MAX_ECHO_CHARS = 100


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    for key, value in err.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    return None


def http_error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extra: str | None,
) -> JsonResponse:
    return JsonResponse(
        {"detail": {"code": code, "message": message, **extra}},
        status_code=status,
        headers=headers,
    )


def fallback(code: grpc.StatusCode) -> tuple[int, str]:
    """HTTP status and body code for a gRPC status that carries no ErrorInfo."""
    return _FALLBACK.get(code, _UPSTREAM)


def error_body(err: grpc.aio.AioRpcError) -> tuple[int, dict[str, str]]:
    """The HTTP status and the contract's `{"code", "message", ...}` for a core error
    (also what an SSE stream sends in-band once its response has started)."""
    info = error_info(err)
    if info is not None:
        extra = dict(info.metadata)
        status_text = extra.pop("http_status", "")
        code = extra.pop("code", info.reason)
        status = int(status_text) if status_text.isdigit() else 500
        return status, {"code": code, "message": err.details() or "", **extra}
    status, code = fallback(err.code())
    message = _MESSAGES.get(code) or err.details() or code.lower().replace("_", " ")
    if status >= 500:
        log.warning("core call failed without ErrorInfo: %s", err.code().name)
    return status, {"code": code, "message": message}


def from_rpc_error(err: grpc.aio.AioRpcError) -> JsonResponse:
    status, body = error_body(err)
    return JsonResponse({"detail": body}, status_code=status)


def from_rejected(err: Rejected) -> JsonResponse:
    return http_error(err.status, err.code, err.message)


def from_http_exception(err: HTTPException) -> JsonResponse:
    code = _HTTP_CODES.get(err.status_code, f"HTTP_{err.status_code}")
    message = err.detail if isinstance(err.detail, str) else code.lower().replace("_", " ")
    return http_error(err.status_code, code, message, headers=err.headers)


_I64, _U64 = -(2**63), 2**64  # the integers orjson serializes


def _clean(text: str) -> str:
    """`text` shortened and made encodable (a lone surrogate becomes "?")."""
    if len(text) > MAX_ECHO_CHARS:
        text = text[:MAX_ECHO_CHARS] + "…"
    return text.encode("utf-8", "replace").decode()


def _echo(value: Any) -> Any:
    """What a 422 may echo of an input: scalars, short strings, small containers.

    An integer JSON can carry but orjson cannot (beyond 64 bits) is echoed as text.
    """
    if isinstance(value, int) and not isinstance(value, bool) and not _I64 <= value < _U64:
        return _clean(str(value))
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _clean(value)
    try:
        size = len(orjson.dumps(jsonable_encoder(value)))
    except (TypeError, ValueError, RecursionError):
        return None
    return value if size <= MAX_ECHO_CHARS else None


def validation_errors(err: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's error list with every `input` shortened and every string encodable."""
    out = []
    for error in err.errors():
        item = {k: v for k, v in error.items() if k not in ("input", "ctx", "url")}
        item["loc"] = [_clean(part) if isinstance(part, str) else part for part in error["loc"]]
        item["msg"] = str(error.get("msg", "")).encode("utf-8", "replace").decode()
        if "input" in error:
            item["input"] = _echo(error["input"])
        if "ctx" in error:
            item["ctx"] = {
                k: _echo(v if isinstance(v, str | int | float) else str(v))
                for k, v in error["ctx"].items()
            }
        out.append(item)
    return out


def from_validation_error(err: RequestValidationError) -> JsonResponse:
    return JsonResponse({"detail": validation_errors(err)}, status_code=422)


def unexpected(request: Request, err: Exception) -> JsonResponse:
    """The last resort: an exception no handler knew; logged without request data."""
    log.error(
        "unhandled %s in %s %s", type(err).__name__, request.method, request.url.path, exc_info=err
    )
    return http_error(500, "INTERNAL", "internal error")
