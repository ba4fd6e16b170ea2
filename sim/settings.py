"""Settings of the simulated world, and the environment media and core need to use it.

The sim reads its own knobs here (core's `Settings` stays core's); names are the field names
upper-cased, and the Twilio ones are the same variables core and media read, so one
`TWILIO_AUTH_TOKEN` signs and checks every callback. The Gemini stand-in must serve TLS (the
SDK always dials `wss://`), so its certificate lives in files under
`CALLAGENT_DATA_DIR/sim/`, created once and reused: `make run` can call `media_env()` before
starting any process, and media trusts the CA file it names.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import trustme
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimSettings(BaseSettings):
    """All of the simulated world's settings."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    callagent_data_dir: pathlib.Path = pathlib.Path("./.callagent")
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    sim_twilio_port: int = Field(default=8082, description="Twilio REST (and the carrier).")
    sim_gemini_port: int = Field(default=8083, description="Gemini Live stand-in (TLS).")
    sim_deepgram_port: int = Field(default=8084, description="Deepgram live websocket.")
    sim_deepgram_http_port: int = Field(default=8085, description="Deepgram batch HTTP.")
    sim_gemini_rest_port: int = Field(
        default=8086, description="Gemini generateContent (core's post-call classifier)."
    )
    sim_gemini_api_key: SecretStr = SecretStr("sim-gemini-key")
    sim_deepgram_api_key: SecretStr = SecretStr("sim-deepgram-key")
    sim_speed: float = Field(default=1.0, gt=0, description="Waits run this much faster.")
    sim_talk_seconds: float = Field(
        default=5.0, gt=0, description="How long a call stays up when no media stream opens."
    )
    sim_media_streams: bool = Field(
        default=True, description="Open Media Streams to media (false: hold lines silently)."
    )
    sim_word_ms: float = Field(
        default=300.0, gt=0, description="Synthetic speech pace: ms per 5-letter word."
    )
    sim_scenarios_dir: pathlib.Path | None = Field(
        default=None,
        description="A folder of the user's own venue files (*.toml) on top of the shipped ones.",
    )
    sim_customer_timeout_sec: float = Field(
        default=90.0, gt=0, description="How long the agent waits for an ask_user answer."
    )

    @field_validator("sim_scenarios_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `SIM_SCENARIOS_DIR=` would otherwise be Path("."): every *.toml in the current
        # folder, pyproject.toml included, read as a venue.
        return None if value == "" else value


@dataclasses.dataclass(frozen=True, slots=True)
class TlsFiles:
    """The Gemini stand-in's CA (for clients to trust) and its key + certificate chain."""

    ca_file: pathlib.Path
    cert_chain_file: pathlib.Path


def ensure_tls_files(data_dir: pathlib.Path) -> TlsFiles:
    """Create the loopback CA and server certificate once; later calls reuse the files."""
    folder = data_dir / "sim"
    files = TlsFiles(folder / "gemini-ca.pem", folder / "gemini-server.pem")
    if files.ca_file.exists() and files.cert_chain_file.exists():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    # Write under temporary names and rename, so a concurrent reader never sees half a file.
    chain_tmp = files.cert_chain_file.with_suffix(".tmp")
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain_tmp))
    os.chmod(chain_tmp, 0o600)
    ca_tmp = files.ca_file.with_suffix(".tmp")
    ca.cert_pem.write_to_path(str(ca_tmp))
    chain_tmp.replace(files.cert_chain_file)
    ca_tmp.replace(files.ca_file)
    return files


def media_env(settings: SimSettings) -> dict[str, str]:
    """The variables the media process needs to talk to this sim's Gemini and Deepgram."""
    tls = ensure_tls_files(settings.callagent_data_dir)
    return {
        "GEMINI_BASE_URL": f"https://127.0.0.1:{settings.sim_gemini_port}",
        "GEMINI_CA_FILE": str(tls.ca_file.resolve()),
        "GEMINI_API_KEY": settings.sim_gemini_api_key.get_secret_value(),
        "DEEPGRAM_WS_BASE": f"ws://127.0.0.1:{settings.sim_deepgram_port}",
        "DEEPGRAM_HTTP_BASE": f"http://127.0.0.1:{settings.sim_deepgram_http_port}",
        "DEEPGRAM_API_KEY": settings.sim_deepgram_api_key.get_secret_value(),
    }


def core_env(settings: SimSettings) -> dict[str, str]:
    """The variables core needs for its post-call classifier to ask this sim's Gemini REST
    stand-in (plain HTTP, the same key as Gemini Live)."""
    return {
        "ANALYSIS_BASE_URL": f"http://127.0.0.1:{settings.sim_gemini_rest_port}",
        "GEMINI_API_KEY": settings.sim_gemini_api_key.get_secret_value(),
    }
