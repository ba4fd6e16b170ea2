"""One server interceptor: authenticate every RPC, and turn CallagentError into a status.

It wraps each handler's behaviour (rather than only inspecting metadata) so the
resolved Principal is set in a contextvar inside the very coroutine that runs the
servicer, and so errors raised anywhere in a servicer are mapped in one place to a
gRPC status carrying google.rpc.ErrorInfo (reason + http_status + extra metadata).
"""

from __future__ import annotations

import contextlib
import contextvars
import hmac
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from common import logs
from core.app.auth import Authenticator, Principal
from core.domain.errors import CallagentError
from core.rpc import handlers, storable

log = logging.getLogger(__name__)

ERROR_DOMAIN = "callagent.dev"
_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")

# Methods that need no credentials (public discovery, health, reflection).
PUBLIC_METHODS = frozenset(
    {
        "/callagent.v1.SkillService/ListSkills",
        "/callagent.v1.SkillService/GetSkillManifest",
    }
)
_PUBLIC_PREFIXES = ("/grpc.health.", "/grpc.reflection.")
# Services only our own processes call; they present the internal token instead of a key.
_INTERNAL_PREFIXES = (
    "/callagent.v1.TelephonyEventService/",
    "/callagent.v1.MediaSessionService/",
)
INTERNAL_TOKEN_HEADER = "x-internal-token"
INTERNAL_PRINCIPAL = Principal(customer_id="", api_key_id="internal", is_admin=True)


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    return _principal.get()


def to_status(err: CallagentError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(
        reason=err.reason,
        domain=ERROR_DOMAIN,
        metadata={
            "http_status": str(err.spec.http_status),
            **({"code": err.spec.public_code} if err.spec.public_code else {}),
            **err.metadata,
        },
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    code: int = grpc.StatusCode[err.spec.code.name].value[0]
    status = status_pb2.Status(code=code, message=err.message, details=[detail])
    result: grpc.Status = rpc_status.to_status(status)
    return result


async def abort(context: grpc.aio.ServicerContext[Any, Any], err: CallagentError) -> NoReturn:
    status = to_status(err)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort returns only by raising")


def _internal() -> CallagentError:
    return CallagentError("INTERNAL", "internal error")


@contextlib.asynccontextmanager
async def _rpc_errors(
    context: grpc.aio.ServicerContext[Any, Any], method: str
) -> AsyncIterator[None]:
    """Map whatever a servicer raises to a status, the same way for every RPC shape."""
    try:
        yield
    except CallagentError as err:
        await abort(context, err)
    except grpc.aio.AbortError:
        raise
    except NotImplementedError:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
    except Exception:
        log.exception("unhandled error in RPC", extra={"method": method})
        await abort(context, _internal())


class AuthErrorInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator, internal_token: str | None) -> None:
        self._authn = authenticator
        self._internal_token = internal_token

    async def _principal_for(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Principal | None:
        if method in PUBLIC_METHODS:
            return None
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        if method.startswith(_INTERNAL_PREFIXES):
            given = metadata.get(INTERNAL_TOKEN_HEADER, "")
            token = self._internal_token
            if not token or not hmac.compare_digest(given.encode(), token.encode()):
                raise CallagentError("UNAUTHENTICATED_KEY", "internal RPC: bad internal token")
            return INTERNAL_PRINCIPAL
        return await self._authn.authenticate(metadata)

    async def _authenticate(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        principal = await self._principal_for(method, context)
        if principal is not None:
            _principal.set(principal)
            logs.bind(customer_id=principal.customer_id)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(_PUBLIC_PREFIXES):
            return handler
        authenticate = self._authenticate

        def unary(inner: Any) -> handlers.Unary:
            async def guarded(request: Any, context: handlers.Ctx) -> Any:
                async with _rpc_errors(context, method):
                    await authenticate(method, context)
                    storable.check(request)
                    result = inner(request, context)
                    return await result if inspect.isawaitable(result) else result
                raise AssertionError("_rpc_errors aborts on every error")

            return guarded

        def streaming(inner: Any) -> handlers.Streaming:
            async def guarded(request: Any, context: handlers.Ctx) -> AsyncIterator[Any]:
                async with _rpc_errors(context, method):
                    await authenticate(method, context)
                    storable.check(request)  # a request message; a stream of them is internal
                    async for item in inner(request, context):
                        yield item

            return guarded

        return handlers.rewrap(handler, unary, streaming)
