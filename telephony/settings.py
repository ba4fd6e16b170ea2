"""The carrier's settings: Twilio credentials and the public URL Twilio calls back on.

Both processes that talk to the carrier read them (core dials and fetches recordings, media
checks webhook signatures and hangs up), so they live with the carrier port rather than in
either process's settings. Environment variable names are the field names upper-cased.
"""

from __future__ import annotations

import functools

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TwilioSettings(BaseSettings):
    """Twilio account, caller id, REST base URL and the callbacks' public base URL."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str = "+15005550006"
    twilio_api_base_url: str | None = Field(
        default=None, description="Twilio REST base URL; unset = api.twilio.com (sim sets it)."
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8081",
        description="Public base URL of the media process (Twilio callbacks, Media Streams).",
    )


@functools.cache
def get_twilio_settings() -> TwilioSettings:
    """The process-wide carrier settings, read once."""
    return TwilioSettings()
