"""Core's settings, read from environment variables (README "Settings").

Core's own knobs plus the carrier's (`telephony.settings.TwilioSettings`, shared with
media); the gateway, media and the simulated world each read their own. Secrets are
`SecretStr`, so their repr is masked and they never reach a log line.
"""

from __future__ import annotations

import functools
import pathlib
import socket
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from core.domain import provider_costs
from telephony.settings import TwilioSettings


class Settings(TwilioSettings):
    """Core's settings; environment variable names are the field names upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL DSN; unset = embedded PostgreSQL in the data dir."
    )
    callagent_data_dir: pathlib.Path = pathlib.Path("./.callagent")
    callagent_grpc_port: int = 50051
    callagent_bind_host: str = "127.0.0.1"
    pod_name: str = Field(default_factory=socket.gethostname)
    callagent_metrics_port: int = Field(
        default=9464, ge=0, description="Core's Prometheus /metrics port; 0 picks a free one."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text (a terminal) or JSON (a collector)."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OTLP/gRPC collector for traces; unset = tracing off."
    )

    bootstrap_admin_api_key: SecretStr | None = None
    gateway_fronted: bool = False
    gateway_context_secret: SecretStr | None = None
    internal_token: SecretStr | None = Field(
        default=None, description="Shared secret media uses for core's internal RPCs."
    )

    default_quota_limit: int = Field(
        default=100_000, ge=0, description="Credits (cents) per month."
    )
    auth_cache_ttl_sec: float = Field(default=5.0, ge=0)
    db_pool_min_size: int = 2
    db_pool_max_size: int = 10

    call_queue_enabled: bool = False
    dial_cps: float = Field(default=1.0, gt=0, description="Queued dials per second, globally.")
    call_reserve_cents: int = Field(default=100, gt=0, description="Credits held per call.")
    call_rate_cents_per_minute: int = Field(default=10, ge=0)
    drainer_poll_sec: float = Field(
        default=1.0,
        gt=0,
        description="How often a follower retries leadership / an idle leader polls.",
    )
    dial_lease_sec: float = Field(default=30.0, gt=0, description="A claimed queue entry's lease.")
    stuck_call_timeout_sec: float = Field(
        default=3 * 3600.0,
        gt=0,
        description="In-progress calls with no activity for this long are failed.",
    )
    stuck_dial_timeout_sec: float = Field(
        default=600.0, gt=0, description="Calls unchanged before answer for this long are failed."
    )
    reconcile_interval_sec: float = Field(default=60.0, gt=0)
    grpc_keepalive_sec: float = Field(
        default=10.0,
        gt=0,
        description="Core pings each client connection this often (a vanished peer is found).",
    )
    grpc_keepalive_timeout_sec: float = Field(
        default=5.0, gt=0, description="A ping unanswered this long closes the connection."
    )
    media_session_grace_sec: float = Field(
        default=5.0,
        gt=0,
        description="A media session broken this long without media re-attaching: hang up.",
    )
    idempotency_ttl_sec: float = Field(default=24 * 3600.0, gt=0)
    idempotency_stale_sec: float = Field(
        default=60.0, gt=0, description="A running Idempotency-Key older than this is stale."
    )

    allow_fictional_numbers: bool | None = Field(
        default=None, description="Accept +1 555 01xx; default: only with the simulated carrier."
    )

    events_close_after_outcome_sec: float = Field(default=5.0, ge=0)
    events_max_stream_sec: float = Field(default=1800.0, gt=0)
    events_transcript_wait_sec: float = Field(
        default=120.0,
        ge=0,
        description="After the outcome, how long a stream waits for transcript_ready.",
    )

    deepgram_api_key: SecretStr | None = Field(
        default=None, description="Deepgram key for the merged transcript; unset = live-only."
    )
    deepgram_http_base: str = "https://api.deepgram.com"
    deepgram_model: str = "nova-3"
    merge_recording_wait_sec: float = Field(
        default=15.0,
        ge=0,
        description="How long a merge waits for the recording callback before asking the carrier.",
    )
    merge_attempts: int = Field(
        default=5, ge=1, le=20, description="Tries before the merge falls back to live lines."
    )
    merge_backoff_base_sec: float = Field(default=2.0, ge=0)
    merge_lease_sec: float = Field(
        default=300.0, gt=0, description="A claimed merge job's lease (a crashed claim expires)."
    )
    merge_poll_sec: float = Field(default=0.5, gt=0, description="How often idle workers look.")

    ask_user_timeout_sec: int = Field(default=90, gt=0, le=3600)
    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_chat_id_fallback: int | None = None
    telegram_poll_timeout_sec: int = Field(default=25, ge=0, le=50)
    webhook_timeout_sec: float = Field(default=5.0, gt=0)
    webhook_attempts: int = Field(default=3, ge=1, le=10)
    webhook_backoff_base_sec: float = Field(default=0.5, ge=0)
    webhook_ca_file: pathlib.Path | None = Field(
        default=None,
        description="Trust this CA bundle (PEM) for webhook TLS instead of the system's.",
    )

    gemini_api_key: SecretStr | None = Field(
        default=None,
        description="Gemini API key (the one media reads); unset = outcome check by rules only.",
    )
    analysis_enabled: bool = Field(
        default=True, description="Ask the model to check a claimed booked (needs the key)."
    )
    analysis_model: str = "gemini-3.8-flash"
    analysis_base_url: str | None = Field(
        default=None,
        description="generateContent base URL; unset = Google (the sim sets its stand-in).",
    )
    analysis_timeout_sec: float = Field(
        default=8.0, gt=0, le=60, description="Bound on one model answer; then the rules decide."
    )
    analysis_threshold: float = Field(
        default=0.7, ge=0, le=1, description="Model confidence that overrules a booked claim."
    )

    # List prices (USD) of the call's cost breakdown in GET /calls/{id}: estimates, not
    # invoices; docs/calls.md gives the source and date of each default.
    price_gemini_input_audio_per_mtok: float = Field(default=3.00, ge=0)
    price_gemini_input_text_per_mtok: float = Field(default=0.50, ge=0)
    price_gemini_output_audio_per_mtok: float = Field(default=12.00, ge=0)
    price_gemini_output_text_per_mtok: float = Field(default=2.00, ge=0)
    price_deepgram_live_per_min: float = Field(default=0.0077, ge=0)
    price_deepgram_batch_per_min: float = Field(default=0.0043, ge=0)
    price_twilio_per_min: float = Field(default=0.014, ge=0)

    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts or CIDRs exempt from the private-address refusal.",
    )

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def analysis_configured(self) -> bool:
        """The model checks outcomes only when enabled and given a key."""
        return self.analysis_enabled and self.gemini_api_key is not None

    @property
    def prices(self) -> provider_costs.Prices:
        """The prices of the cost breakdown."""
        return provider_costs.Prices(
            gemini_input_audio_per_mtok=self.price_gemini_input_audio_per_mtok,
            gemini_input_text_per_mtok=self.price_gemini_input_text_per_mtok,
            gemini_output_audio_per_mtok=self.price_gemini_output_audio_per_mtok,
            gemini_output_text_per_mtok=self.price_gemini_output_text_per_mtok,
            deepgram_live_per_min=self.price_deepgram_live_per_min,
            deepgram_batch_per_min=self.price_deepgram_batch_per_min,
            twilio_per_min=self.price_twilio_per_min,
        )

    @property
    def fictional_numbers_allowed(self) -> bool:
        """+1 555 01xx is dialable only when the carrier is not the real Twilio."""
        if self.allow_fictional_numbers is not None:
            return self.allow_fictional_numbers
        return self.twilio_api_base_url is not None or self.twilio_account_sid is None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
