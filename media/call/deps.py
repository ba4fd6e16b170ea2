"""What every call of a media process shares, built once in the app's lifespan."""

from __future__ import annotations

import dataclasses

from google import genai

from media.call import core_link
from media.call.sessions import CallSettings
from telephony import port as telephony


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeDeps:
    """What every call of a media process shares."""

    settings: CallSettings
    core_links: core_link.CoreLinkFactory
    phone: telephony.Telephony
    gemini_client: genai.Client | None
    pod: str
