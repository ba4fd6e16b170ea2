"""The gateway process's own settings, read from environment variables.

The gateway is a separate process that shares no code with core (only the gRPC
stubs), so it reads just the knobs it uses, under the same environment variable
names core's settings document: where to listen, where core is, and the SSE limits.
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """Environment variable names are the field names upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    callagent_bind_host: str = "127.0.0.1"
    callagent_http_port: int = 8080
    callagent_grpc_port: int = 50051
    core_grpc_target: str | None = Field(
        default=None, description="Where the gateway finds core; default 127.0.0.1:<grpc port>."
    )
    sse_max_streams: int = Field(default=2000, gt=0, description="SSE streams per gateway.")
    sse_heartbeat_sec: float = Field(default=15.0, gt=0)
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text (a terminal) or JSON (a collector)."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OTLP/gRPC collector for traces; unset = tracing off."
    )

    @property
    def grpc_target(self) -> str:
        return self.core_grpc_target or f"127.0.0.1:{self.callagent_grpc_port}"


@functools.cache
def get_settings() -> GatewaySettings:
    """The process-wide settings, read once."""
    return GatewaySettings()
