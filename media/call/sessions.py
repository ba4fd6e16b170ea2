"""What a call reads from its process's settings, and the provider sessions built from them.

The bridge needs pacing bounds and the Gemini and Deepgram configuration, but `media.call`
sits below `media.settings` in media's layers, so it names what it reads as the `CallSettings`
protocol; `media.settings.MediaSettings` satisfies it. `live_session()` and
`supervisor_ear()` build one call's Gemini Live session and Deepgram ear from those settings
and the task core handed over on attach.
"""

from __future__ import annotations

import ssl
from typing import Protocol

from google import genai
from pydantic import SecretStr

from media.call.core_link import CallTask
from media.providers import agent_prompt
from media.providers.deepgram_ear import DeepgramConfig, DeepgramEar
from media.providers.gemini_live import GeminiLiveSession

_DEEPGRAM_LANGUAGES = {"ru": "ru", "en": "en-US"}


class CallSettings(Protocol):
    """The settings one call reads (see `media.settings.MediaSettings` for their meaning)."""

    @property
    def gemini_api_key(self) -> SecretStr | None: ...
    @property
    def gemini_model(self) -> str: ...
    @property
    def gemini_base_url(self) -> str | None: ...
    @property
    def gemini_voice(self) -> str | None: ...
    @property
    def resume_gap_budget_ms(self) -> int: ...
    @property
    def voicemail_action(self) -> str: ...
    @property
    def voicemail_message(self) -> str: ...
    @property
    def silence_timeout_sec(self) -> float: ...
    @property
    def max_call_duration_sec(self) -> float: ...
    @property
    def hold_give_up_sec(self) -> float: ...
    @property
    def goodbye_timeout_sec(self) -> float: ...
    @property
    def ask_user_timeout_sec(self) -> int: ...
    @property
    def reattach_timeout_sec(self) -> float: ...
    @property
    def outbound_lead_ms(self) -> int: ...

    def disclosure(self, language: str) -> str: ...

    def gemini_ssl_context(self) -> ssl.SSLContext | None: ...

    def deepgram_config(self) -> DeepgramConfig | None: ...


def live_session(
    settings: CallSettings, client: genai.Client | None, task: CallTask, call_id: str
) -> GeminiLiveSession:
    """The call's Gemini Live session (not started), told the task and how to speak."""
    s = settings
    key = s.gemini_api_key.get_secret_value() if s.gemini_api_key else ""
    instruction = agent_prompt.build_system_instruction(
        task.brief, task.language, task.kind, task.parsed_slots, s.disclosure(task.language)
    )
    return GeminiLiveSession(
        key,
        model=s.gemini_model,
        base_url=s.gemini_base_url,
        ssl_context=s.gemini_ssl_context(),
        client=client,
        system_instruction=instruction,
        voice=s.gemini_voice,
        language_code=agent_prompt.speech_language_code(task.language, s.gemini_model),
        resume_gap_budget_ms=s.resume_gap_budget_ms,
        call_id=call_id,
    )


def supervisor_ear(settings: CallSettings, task: CallTask, call_id: str) -> DeepgramEar | None:
    """The call's Deepgram ear (not started), or None when Deepgram is not configured."""
    config = settings.deepgram_config()
    if config is None:
        return None
    language = _DEEPGRAM_LANGUAGES.get(task.language, "multi")
    return DeepgramEar(config, language=language, call_id=call_id)
