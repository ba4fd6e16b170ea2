"""Process settings for every callagent process, read from environment variables.

One class so that every knob has one documented name (see README "Settings").
Secrets are `SecretStr`, so their repr is masked and they never reach a log line.
"""

from __future__ import annotations

import functools
import pathlib
import socket
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """All settings; environment variable names are the field names upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL DSN; unset = embedded PostgreSQL in the data dir."
    )
    callagent_data_dir: pathlib.Path = pathlib.Path("./.callagent")
    callagent_http_port: int = 8080
    callagent_grpc_port: int = 50051
    callagent_media_port: int = 8081
    callagent_bind_host: str = "127.0.0.1"
    core_grpc_target: str | None = Field(
        default=None, description="Where the gateway finds core; default 127.0.0.1:<grpc port>."
    )
    pod_name: str = Field(default_factory=socket.gethostname)

    bootstrap_admin_api_key: SecretStr | None = None
    gateway_fronted: bool = False
    gateway_context_secret: SecretStr | None = None

    default_quota_limit: int = Field(
        default=100_000, ge=0, description="Credits (cents) per month."
    )
    auth_cache_ttl_sec: float = Field(default=5.0, ge=0)
    db_pool_min_size: int = 2
    db_pool_max_size: int = 10

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
    def grpc_target(self) -> str:
        return self.core_grpc_target or f"127.0.0.1:{self.callagent_grpc_port}"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
