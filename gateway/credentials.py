"""Request credentials → gRPC metadata. The gateway forwards whatever came; core decides
what it is worth (an API key, or a signed X-Gateway-Context when GATEWAY_FRONTED=1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

Metadata = tuple[tuple[str, str], ...]


def credentials(
    x_gateway_context: Annotated[str | None, Header(alias="X-Gateway-Context")] = None,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
) -> Metadata:
    """A FastAPI dependency, also called directly by routes that declare the headers."""
    out: list[tuple[str, str]] = []
    if x_gateway_context is not None:
        out.append(("x-gateway-context", x_gateway_context))
    if x_api_key is not None:
        out.append(("x-api-key", x_api_key))
    return tuple(out)


Creds = Annotated[Metadata, Depends(credentials)]
