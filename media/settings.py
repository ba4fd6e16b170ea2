"""Settings only the media process reads: where it listens and finds core, model and STT
credentials, call pacing and bounds.

The carrier's settings (Twilio credentials, `public_base_url`) are `telephony.settings`; media
reads no core module, so the few names it shares with core (bind host, ports, gRPC target, pod
name, internal token) are declared here again under the same environment variables. Base URLs
and the CA file exist so the same production adapters can be pointed at loopback fakes (`sim/`,
tests): switching between the simulated world and the real one is configuration only.
"""

from __future__ import annotations

import functools
import socket
import ssl
import urllib.parse
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from media.providers import agent_prompt, deepgram_ear, gemini_live


class MediaSettings(BaseSettings):
    """Media-process settings; environment variable names are the field names upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    callagent_bind_host: str = "127.0.0.1"
    callagent_media_port: int = 8081
    callagent_grpc_port: int = 50051
    core_grpc_target: str | None = Field(
        default=None, description="Where media finds core; default 127.0.0.1:<grpc port>."
    )
    pod_name: str = Field(default_factory=socket.gethostname)
    media_internal_url: str | None = Field(
        default=None,
        description=(
            "This pod's websocket base URL as other media pods reach it (ws://<pod IP>:<port>):"
            " a DTMF re-connect landing elsewhere is relayed here; default ws://127.0.0.1:<port>."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text (a terminal) or JSON (a collector)."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OTLP/gRPC collector for traces; unset = tracing off."
    )
    internal_token: SecretStr | None = Field(
        default=None, description="Shared secret media uses for core's internal RPCs."
    )

    gemini_api_key: SecretStr | None = Field(
        default=None, description="Gemini API key; unset = calls fail at once with outcome failed."
    )
    gemini_model: str = gemini_live.DEFAULT_MODEL
    gemini_base_url: str | None = Field(
        default=None, description="Gemini API base URL; unset = Google (sim sets a loopback fake)."
    )
    gemini_ca_file: str | None = Field(
        default=None, description="PEM file of extra CAs to trust for Gemini (a fake's CA)."
    )
    gemini_voice: str | None = None

    deepgram_api_key: SecretStr | None = Field(
        default=None, description="Deepgram API key; unset = no supervisor ear (degraded)."
    )
    deepgram_http_base: str = deepgram_ear.PRODUCTION_HTTP_BASE
    deepgram_ws_base: str = deepgram_ear.PRODUCTION_WS_BASE
    deepgram_model: str = "nova-3"

    ai_disclosure_text: str | None = Field(
        default=None, description="The agent's first sentence; unset = a default per language."
    )
    voicemail_action: Literal["leave_message", "hang_up"] = "leave_message"
    voicemail_message: str = Field(
        default=(
            "Hello, this is an AI assistant calling on behalf of a customer about a booking. "
            "We will call back later. Thank you."
        ),
        description="What the agent says on an answering machine (leave_message).",
    )
    silence_timeout_sec: float = Field(
        default=30.0, gt=0, description="Nobody audible this long ends the call (not on hold)."
    )
    max_call_duration_sec: float = Field(default=900.0, gt=0)
    hold_give_up_sec: float = Field(default=300.0, gt=0)
    goodbye_timeout_sec: float = Field(
        default=10.0, gt=0, description="Bound on the model's goodbye and its playback."
    )
    ask_user_timeout_sec: int = Field(default=120, gt=0)
    reattach_timeout_sec: float = Field(
        default=10.0, gt=0, description="How long a stream stopped by DTMF may take to return."
    )
    media_drain_sec: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long live calls may go on before they are ended.",
    )
    resume_gap_budget_ms: int = Field(
        default=8000, gt=0, description="Longest Gemini reconnection gap before the call fails."
    )
    outbound_lead_ms: int = Field(
        default=80, ge=20, description="How far ahead of real time audio is queued at Twilio."
    )

    @field_validator("media_internal_url")
    @classmethod
    def _internal_url_is_a_websocket_base(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("MEDIA_INTERNAL_URL must be a ws:// or wss:// base URL")
        return url.rstrip("/")

    @property
    def grpc_target(self) -> str:
        return self.core_grpc_target or f"127.0.0.1:{self.callagent_grpc_port}"

    @property
    def internal_url(self) -> str:
        """Where other media pods reach this one's `/twilio/stream` (its base URL)."""
        return self.media_internal_url or f"ws://127.0.0.1:{self.callagent_media_port}"

    def disclosure(self, language: str) -> str:
        """The configured disclosure, else the default for `language` (English for auto)."""
        if self.ai_disclosure_text:
            return self.ai_disclosure_text
        defaults = agent_prompt.DEFAULT_DISCLOSURES
        return defaults.get(language, defaults["en"])

    def gemini_ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context trusting `gemini_ca_file`, or None for the SDK's default trust."""
        if self.gemini_ca_file is None:
            return None
        return _ssl_context(self.gemini_ca_file)

    def deepgram_config(self) -> deepgram_ear.DeepgramConfig | None:
        if self.deepgram_api_key is None:
            return None
        return deepgram_ear.DeepgramConfig(
            api_key=self.deepgram_api_key,
            http_base=self.deepgram_http_base,
            ws_base=self.deepgram_ws_base,
            model=self.deepgram_model,
        )


@functools.cache
def _ssl_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


@functools.cache
def get_media_settings() -> MediaSettings:
    """The process-wide media settings, read once."""
    return MediaSettings()
