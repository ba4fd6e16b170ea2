"""The media process: Twilio's webhooks (and, next, its Media Streams) on one port."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.settings import Settings, get_settings
from media.core_sink import CoreTelephonySink
from media.twilio_webhooks import twilio_webhook_routes


class _LazySink:
    """Resolves the gRPC sink at request time; the channel is opened in the lifespan."""

    def __init__(self) -> None:
        self.target: CoreTelephonySink | None = None

    async def deliver(self, event: object) -> None:
        assert self.target is not None, "lifespan not started"
        await self.target.deliver(event)  # type: ignore[arg-type]


def create_app(settings: Settings) -> Starlette:
    if settings.twilio_auth_token is None or settings.internal_token is None:
        raise RuntimeError("media needs TWILIO_AUTH_TOKEN and INTERNAL_TOKEN")
    sink = _LazySink()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        assert settings.internal_token is not None
        async with grpc.aio.insecure_channel(settings.grpc_target) as channel:
            sink.target = CoreTelephonySink(channel, settings.internal_token.get_secret_value())
            yield

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    routes = [
        *twilio_webhook_routes(
            settings.twilio_auth_token.get_secret_value(), settings.public_base_url, sink
        ),
        Route("/healthz", healthz),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("twilio").setLevel(logging.WARNING)
    uvicorn.run(
        create_app(settings),
        host=settings.callagent_bind_host,
        port=settings.callagent_media_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
