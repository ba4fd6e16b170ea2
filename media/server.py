"""The media process: Twilio's webhooks and its Media Streams websocket on one port.

Composition root of the telephony edge: the webhook routes hand callbacks to core (and feed
async AMD results to the local call bridge), and `/twilio/stream` runs one `CallBridge` per
live call with a `CoreLink` session to core, a shared Gemini client, the telephony port for
hang-ups and DTMF, and Deepgram when configured; `/metrics` shows the live calls and the
request series (`docs/observability.md`). `/healthz` says the process is alive; `/readyz` says
it should get new calls: not while it drains (`media.drain`, on SIGTERM) and not while core's
media session service does not answer its gRPC health check. Settings are media's own
(`media.settings`) and the carrier's (`telephony.settings`): media imports no core module.
Tests and benchmarks inject in-memory core links, a fake telephony port or another sink
through `create_app`'s keyword arguments; without them the app uses the real gRPC link and Twilio.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import uvicorn
from callagent.v1 import media_pb2
from google import genai
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from common import logs, tracing
from common.http_metrics import HttpMetrics, metrics_endpoint
from media.call import core_link
from media.call.deps import BridgeDeps
from media.drain import Drain, DrainingServer
from media.providers import gemini_live
from media.providers.tls import default_tls
from media.settings import MediaSettings, get_media_settings
from media.twilio.core_sink import CoreTelephonySink
from media.twilio.stream_endpoint import STREAM_PATH, BridgeRegistry, StreamEndpoint
from media.twilio.webhooks import TelephonyEvent, TelephonySink, twilio_webhook_routes
from telephony import port as telephony
from telephony.settings import TwilioSettings, get_twilio_settings
from telephony.twilio_rest import TwilioTelephony

# Reconnect to core quickly after it (re)starts instead of gRPC's default 1 s → 120 s backoff.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
CORE_SERVICE = media_pb2.DESCRIPTOR.services_by_name["MediaSessionService"].full_name
READY_CHECK_S = 1.0


class _LazySink:
    """Resolves the gRPC sink at request time; the channel is opened in the lifespan."""

    def __init__(self) -> None:
        self.target: TelephonySink | None = None

    async def deliver(self, event: TelephonyEvent) -> None:
        assert self.target is not None, "lifespan not started"
        await self.target.deliver(event)


class _AmdTap:
    """Feeds async AMD results to the local bridge, then passes every event on to core."""

    def __init__(self, registry: BridgeRegistry, inner: TelephonySink) -> None:
        self._registry = registry
        self._inner = inner

    async def deliver(self, event: TelephonyEvent) -> None:
        if event.kind == "amd" and event.answered_by:
            self._registry.on_amd(event.call_sid, event.answered_by)
        await self._inner.deliver(event)


def create_app(
    media: MediaSettings,
    twilio: TwilioSettings,
    *,
    core_links: core_link.CoreLinkFactory | None = None,
    phone: telephony.Telephony | None = None,
    sink: TelephonySink | None = None,
) -> MediaApp:
    if twilio.twilio_auth_token is None or media.internal_token is None:
        raise RuntimeError("media needs TWILIO_AUTH_TOKEN and INTERNAL_TOKEN")
    if phone is None and twilio.twilio_account_sid is None:
        raise RuntimeError("media needs TWILIO_ACCOUNT_SID to hang up and send DTMF")
    auth_token = twilio.twilio_auth_token.get_secret_value()
    internal_token = media.internal_token.get_secret_value()
    lazy = _LazySink()
    registry = BridgeRegistry()
    drain = Drain(registry, media.media_drain_sec, media.goodbye_timeout_sec)
    core_health: list[health_pb2_grpc.HealthStub] = []  # set in the lifespan

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(
                    media.grpc_target,
                    options=CHANNEL_OPTIONS,
                    interceptors=tracing.client_interceptors(),
                )
            )
            core_health.append(health_pb2_grpc.HealthStub(channel))
            lazy.target = sink or CoreTelephonySink(channel, internal_token)
            links = core_links or (lambda: core_link.GrpcCoreLink(channel, internal_token))
            port = phone
            if port is None:
                assert twilio.twilio_account_sid is not None
                rest = TwilioTelephony(
                    twilio.twilio_account_sid,
                    auth_token,
                    twilio.twilio_from_number,
                    twilio.public_base_url,
                    twilio.twilio_api_base_url,
                    stream_owner=media.internal_url,  # DTMF re-connects come back to this pod
                )
                stack.push_async_callback(rest.aclose)
                port = rest
            client = _gemini_client(media)
            if client is not None:
                stack.push_async_callback(_close_client, client)
            default_tls()  # built now, not on the first call's audio path
            registry.bind(BridgeDeps(media, links, port, client, media.pod_name))
            stack.push_async_callback(registry.aclose)
            yield

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "calls": len(registry.bridges)})

    async def readyz(request: Request) -> JSONResponse:
        if drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not core_health or not await _core_serving(core_health[0]):
            return JSONResponse({"status": "core unavailable"}, status_code=503)
        return JSONResponse({"status": "ready", "calls": len(registry.bridges)})

    routes = [
        *twilio_webhook_routes(auth_token, twilio.public_base_url, _AmdTap(registry, lazy)),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    middleware = [Middleware(HttpMetrics), Middleware(tracing.TraceRequests, process="media")]
    web = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    web.state.registry = registry
    web.state.drain = drain
    stream = StreamEndpoint(auth_token, twilio.public_base_url, registry, media.internal_url)
    return MediaApp(web, stream)


async def _core_serving(stub: health_pb2_grpc.HealthStub) -> bool:
    """Whether core answers that its media session service is serving (within a second)."""
    request = health_pb2.HealthCheckRequest(service=CORE_SERVICE)
    try:
        reply = await stub.Check(request, timeout=READY_CHECK_S)
    except grpc.aio.AioRpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class MediaApp:
    """The media process's ASGI app: the Media Streams socket goes straight to its raw
    handler, everything else (webhooks, health, lifespan) to the Starlette app."""

    def __init__(self, web: Starlette, stream: StreamEndpoint) -> None:
        self.web = web
        self.state = web.state
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == STREAM_PATH:
            await self._stream(scope, receive, send)
        else:
            await self.web(scope, receive, send)


def _gemini_client(media: MediaSettings) -> genai.Client | None:
    """One client for every call: building one costs ~80 ms of TLS setup (see make_client)."""
    if media.gemini_api_key is None:
        return None
    return gemini_live.make_client(
        media.gemini_api_key.get_secret_value(), media.gemini_base_url, media.gemini_ssl_context()
    )


async def _close_client(client: genai.Client) -> None:
    await client.aio.aclose()
    client.close()


def main() -> None:
    media = get_media_settings()
    logs.configure(media.log_format)
    tracing.setup("callagent-media", media.otel_exporter_otlp_endpoint)
    app = create_app(media, get_twilio_settings())
    config = uvicorn.Config(
        app,
        host=media.callagent_bind_host,
        port=media.callagent_media_port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through our handler (JSON with LOG_FORMAT=json)
        access_log=False,
    )
    DrainingServer(config, app.state.drain).run()


if __name__ == "__main__":
    main()
