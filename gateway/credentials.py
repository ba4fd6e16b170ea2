"""Request credentials → gRPC metadata. The gateway forwards whatever came; core decides
what it is worth (an API key, or a signed X-Gateway-Context when GATEWAY_FRONTED=1).

Only values that could be a credential at all are forwarded: gRPC metadata carries
visible ASCII of bounded size, and a tab, control byte, non-ASCII byte or a 64 KB value
made the gRPC call itself fail (a 500). Those get the same 401 body core gives any
unknown key or malformed context.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from gateway.inputs import Rejected, credential_ok

Metadata = tuple[tuple[str, str], ...]

# Core's own messages for a key it does not know and a context it cannot parse.
_BAD_KEY = Rejected(401, "UNAUTHENTICATED_KEY", "unknown or revoked API key")
_BAD_CONTEXT = Rejected(
    401, "UNAUTHENTICATED_CONTEXT", "X-Gateway-Context rejected: not base64url JSON"
)


def credentials(
    x_gateway_context: Annotated[str | None, Header(alias="X-Gateway-Context")] = None,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
) -> Metadata:
    """A FastAPI dependency, also called directly by routes that declare the headers.

    Raises:
        Rejected: 401 for a value that cannot be a valid credential.
    """
    out: list[tuple[str, str]] = []
    if x_gateway_context is not None:
        if not credential_ok(x_gateway_context):
            raise Rejected(_BAD_CONTEXT.status, _BAD_CONTEXT.code, _BAD_CONTEXT.message)
        out.append(("x-gateway-context", x_gateway_context))
    if x_api_key:
        if not credential_ok(x_api_key):
            raise Rejected(_BAD_KEY.status, _BAD_KEY.code, _BAD_KEY.message)
        out.append(("x-api-key", x_api_key))
    return tuple(out)


Creds = Annotated[Metadata, Depends(credentials)]
