"""The core process: an async gRPC server over PostgreSQL.

Start-up order: resolve the database (embedded when DATABASE_URL is unset), apply
migrations, sync the bootstrap admin key, open the pool, serve. Shutdown: health
NOT_SERVING, stop accepting, let in-flight RPCs finish within the grace period,
close the pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import ssl
from typing import Any

import asyncpg
import grpc
from callagent.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    bookings_pb2,
    bookings_pb2_grpc,
    calls_pb2,
    calls_pb2_grpc,
    media_pb2,
    media_pb2_grpc,
    skills_pb2,
    skills_pb2_grpc,
    telephony_pb2,
    telephony_pb2_grpc,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common import logs, tracing
from common.aio import cancel_all_and_wait
from common.metrics_server import MetricsServer
from core.adapters.deepgram_batch import DeepgramBatch
from core.adapters.outcome_model import OutcomeModel
from core.adapters.telegram import TelegramBot
from core.adapters.webhook_delivery import WebhookDelivery
from core.app import api_keys, ask_user, calls, events, merges, reconciler, sessions
from core.app.auth import Authenticator
from core.app.drainer import Drainer
from core.app.lost_sessions import LostSessions
from core.app.outcome_verification import Analyst
from core.app.telegram_answers import TelegramAnswerPoller
from core.domain import skill_catalog, skills
from core.rpc.accounts import AccountServicer
from core.rpc.admin import AdminServicer
from core.rpc.bookings import BookingServicer
from core.rpc.calls import CallServicer, TelephonyEventServicer
from core.rpc.interceptor import AuthErrorInterceptor
from core.rpc.media import MediaSessionServicer
from core.rpc.observing import ObservingInterceptor
from core.rpc.skills import SkillServicer
from core.settings import Settings, get_settings
from core.store import database, migrations
from telephony.port import Telephony
from telephony.twilio_rest import TwilioTelephony

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    bookings_pb2.DESCRIPTOR.services_by_name["BookingService"].full_name,
    calls_pb2.DESCRIPTOR.services_by_name["CallService"].full_name,
    skills_pb2.DESCRIPTOR.services_by_name["SkillService"].full_name,
    telephony_pb2.DESCRIPTOR.services_by_name["TelephonyEventService"].full_name,
    media_pb2.DESCRIPTOR.services_by_name["MediaSessionService"].full_name,
)


async def prepare_database(settings: Settings, dsn: str | None = None) -> str:
    """Resolve the DSN, apply migrations and sync the bootstrap key; return the DSN."""
    dsn = dsn or await database.resolve_dsn(settings)
    conn = await database.connect(dsn)
    try:
        await migrations.migrate(conn)
        bootstrap = settings.bootstrap_admin_api_key
        await api_keys.sync_bootstrap_key(
            conn,
            bootstrap.get_secret_value() if bootstrap else None,
            settings.default_quota_limit,
        )
    finally:
        await conn.close()
    return dsn


@dataclasses.dataclass
class Core:
    """A running core: its gRPC server, bound port and database pool."""

    server: grpc.aio.Server
    port: int
    pool: asyncpg.Pool[Any]
    health: health.aio.HealthServicer
    calls: calls.CallService
    telephony: Telephony
    drainer: Drainer | None
    background: list[asyncio.Task[None]]
    owns_telephony: bool
    broker: events.EventBroker
    hub: sessions.SessionHub
    channels: ask_user.Channels
    outcome_model: OutcomeModel | None = None
    lost_sessions: LostSessions | None = None
    metrics: MetricsServer | None = None

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)  # its shutdown polls every 0.5 s
        await cancel_all_and_wait(self.background)
        if self.lost_sessions is not None:
            await self.lost_sessions.aclose()
        await self.broker.aclose()
        await self.hub.aclose()
        if self.channels.webhook is not None:
            await self.channels.webhook.aclose()
        if self.channels.telegram is not None:
            await self.channels.telegram.aclose()
        if self.owns_telephony:
            await self.telephony.aclose()
        if self.outcome_model is not None:
            await self.outcome_model.aclose()
        await self.pool.close()


def build_telephony(settings: Settings) -> Telephony:
    """The carrier adapter: Twilio (real, or the simulated carrier behind TWILIO_API_BASE_URL)."""
    if settings.twilio_account_sid is None or settings.twilio_auth_token is None:
        raise RuntimeError(
            "no carrier configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
            "(make run sets them for the simulated carrier)"
        )
    return TwilioTelephony(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        settings.twilio_from_number,
        settings.public_base_url,
        settings.twilio_api_base_url,
    )


def build_channels(settings: Settings) -> ask_user.Channels:
    """Outbound ask_user channels: the customer webhook always, Telegram when configured."""
    bot = None
    if settings.telegram_bot_token is not None:
        bot = TelegramBot(settings.telegram_bot_token, base_url=settings.telegram_api_base_url)
    ssl_context = None
    if settings.webhook_ca_file is not None:
        ssl_context = ssl.create_default_context(cafile=str(settings.webhook_ca_file))
    return ask_user.Channels(
        webhook=WebhookDelivery(
            settings.webhook_allowed_hosts,
            timeout_sec=settings.webhook_timeout_sec,
            attempts=settings.webhook_attempts,
            backoff_base_sec=settings.webhook_backoff_base_sec,
            ssl_context=ssl_context,
        ),
        telegram=bot,
        telegram_fallback_chat=settings.telegram_chat_id_fallback if bot else None,
    )


def build_deepgram(settings: Settings) -> DeepgramBatch | None:
    """Deepgram's batch API for merged transcripts; None (live-only merges) without a key."""
    if settings.deepgram_api_key is None:
        return None
    return DeepgramBatch(
        settings.deepgram_api_key,
        http_base=settings.deepgram_http_base,
        model=settings.deepgram_model,
    )


def merge_policy(settings: Settings) -> merges.MergePolicy:
    return merges.MergePolicy(
        recording_wait_sec=settings.merge_recording_wait_sec,
        attempts=settings.merge_attempts,
        backoff_base_sec=settings.merge_backoff_base_sec,
        lease_sec=settings.merge_lease_sec,
        poll_sec=settings.merge_poll_sec,
    )


def build_outcome_model(settings: Settings) -> OutcomeModel | None:
    """The post-call classifier on Gemini, when analysis is enabled and has a key; without
    it a claimed booked is checked by the rules alone."""
    if not settings.analysis_configured or settings.gemini_api_key is None:
        return None
    return OutcomeModel(
        settings.gemini_api_key.get_secret_value(),
        model=settings.analysis_model,
        base_url=settings.analysis_base_url,
        timeout_s=settings.analysis_timeout_sec,
    )


def keepalive_options(settings: Settings) -> tuple[tuple[str, int], ...]:
    """Ping every client connection, data or not: a media pod whose node or network vanished
    leaves no FIN behind, and only an unanswered ping ends its calls' sessions (and so
    starts `core.app.lost_sessions`) in seconds rather than after TCP's own timeouts."""
    return (
        ("grpc.keepalive_time_ms", round(settings.grpc_keepalive_sec * 1000)),
        ("grpc.keepalive_timeout_ms", round(settings.grpc_keepalive_timeout_sec * 1000)),
        ("grpc.http2.ping_timeout_ms", round(settings.grpc_keepalive_timeout_sec * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    )


def call_policy(settings: Settings) -> calls.CallPolicy:
    return calls.CallPolicy(
        reserve_cents=settings.call_reserve_cents,
        rate_cents_per_minute=settings.call_rate_cents_per_minute,
        queue_enabled=settings.call_queue_enabled,
        allow_fictional_numbers=settings.fictional_numbers_allowed,
        pod_name=settings.pod_name,
        idempotency_ttl_sec=settings.idempotency_ttl_sec,
        idempotency_stale_sec=settings.idempotency_stale_sec,
    )


async def start(
    settings: Settings,
    *,
    dsn: str | None = None,
    port: int | None = None,
    telephony: Telephony | None = None,
) -> Core:
    """Start core on settings' host and port (port=0 picks a free one)."""
    dsn = await prepare_database(settings, dsn)
    owns_telephony = telephony is None
    telephony = telephony or build_telephony(settings)
    pool = await database.create_pool(dsn, settings.db_pool_min_size, settings.db_pool_max_size)
    secret = settings.gateway_context_secret
    authenticator = Authenticator(
        pool,
        gateway_fronted=settings.gateway_fronted,
        context_secret=secret.get_secret_value() if secret else None,
        cache_ttl=settings.auth_cache_ttl_sec,
    )
    internal = settings.internal_token
    server = grpc.aio.server(
        interceptors=[
            ObservingInterceptor(),
            AuthErrorInterceptor(authenticator, internal.get_secret_value() if internal else None),
        ],
        options=keepalive_options(settings),
    )
    call_service = calls.CallService(pool, telephony, call_policy(settings))
    accounts_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(pool, settings), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(pool, settings), server)
    bookings_pb2_grpc.add_BookingServiceServicer_to_server(BookingServicer(pool), server)
    broker = events.EventBroker(dsn, pool)
    await broker.start()
    hub = sessions.SessionHub(dsn)
    await hub.start()
    channels = build_channels(settings)
    asker = ask_user.AskUser(pool, channels)
    outcome_model = build_outcome_model(settings)
    analyst = (
        Analyst(outcome_model, threshold=settings.analysis_threshold) if outcome_model else None
    )
    lost = LostSessions(call_service, settings.media_session_grace_sec)
    media_pb2_grpc.add_MediaSessionServiceServicer_to_server(
        MediaSessionServicer(
            call_service, asker, hub, settings.ask_user_timeout_sec, analyst, lost
        ),
        server,
    )
    calls_pb2_grpc.add_CallServiceServicer_to_server(
        CallServicer(
            call_service,
            broker,
            asker,
            close_after_outcome_sec=settings.events_close_after_outcome_sec,
            max_stream_sec=settings.events_max_stream_sec,
            transcript_wait_sec=settings.events_transcript_wait_sec,
            prices=settings.prices,
        ),
        server,
    )
    merge_worker = merges.MergeWorker(
        call_service, build_deepgram(settings), merge_policy(settings)
    )
    telephony_pb2_grpc.add_TelephonyEventServiceServicer_to_server(
        TelephonyEventServicer(call_service, on_recording=merge_worker.poke), server
    )
    skills_pb2_grpc.add_SkillServiceServicer_to_server(
        SkillServicer(skills.Registry(skill_catalog.SKILLS), call_service, pool), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(
        f"{settings.callagent_bind_host}:{settings.callagent_grpc_port if port is None else port}"
    )
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await reconciler.reconcile_once(
        call_service,
        stuck_dial_sec=settings.stuck_dial_timeout_sec,
        stuck_call_sec=settings.stuck_call_timeout_sec,
        lost=lost,
    )
    background = [
        asyncio.create_task(
            reconciler.run_forever(
                call_service,
                interval=settings.reconcile_interval_sec,
                stuck_dial_sec=settings.stuck_dial_timeout_sec,
                stuck_call_sec=settings.stuck_call_timeout_sec,
                lost=lost,
            ),
            name="reconciler",
        ),
        asyncio.create_task(merge_worker.run(), name="transcript-merges"),
    ]
    if channels.telegram is not None:
        poller = TelegramAnswerPoller(
            dsn,
            pool,
            channels.telegram,
            asker,
            poll_timeout_sec=settings.telegram_poll_timeout_sec,
        )
        background.append(asyncio.create_task(poller.run(), name="telegram-answers"))
    queue_drainer = None
    if settings.call_queue_enabled:
        queue_drainer = Drainer(
            dsn,
            pool,
            call_service,
            cps=settings.dial_cps,
            lease_sec=settings.dial_lease_sec,
            pod_name=settings.pod_name,
            idle_poll_sec=settings.drainer_poll_sec,
        )
        background.append(asyncio.create_task(queue_drainer.run(), name="drainer"))
    metrics_server = MetricsServer.open(
        settings.callagent_bind_host, settings.callagent_metrics_port
    )
    log.info("core serving", extra={"port": bound})
    return Core(
        server=server,
        port=bound,
        pool=pool,
        health=health_servicer,
        calls=call_service,
        telephony=telephony,
        drainer=queue_drainer,
        background=background,
        owns_telephony=owns_telephony,
        broker=broker,
        hub=hub,
        channels=channels,
        outcome_model=outcome_model,
        lost_sessions=lost,
        metrics=metrics_server,
    )


async def serve(settings: Settings) -> None:
    tracing.setup("callagent-core", settings.otel_exporter_otlp_endpoint)
    core = await start(settings)
    print(f"core: gRPC on {settings.callagent_bind_host}:{core.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("core shutting down")
    await core.stop()


def main() -> None:
    logs.configure(get_settings().log_format)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(get_settings()))
    else:
        uvloop.run(serve(get_settings()))


if __name__ == "__main__":
    main()
