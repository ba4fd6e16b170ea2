"""What a call is asked to do, and the allowed values of each field of that task.

The values are declared here once: the REST start, the skill catalog's schemas and the
skill manifests all read them, so a new language or kind cannot be accepted by one entry
point and refused by another. `validate` is the single check every start goes through.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from core.domain import phones
from core.domain.errors import CallagentError

LANGUAGES = ("ru", "en", "auto")
KINDS = (
    "restaurant_booking",
    "restaurant_cancel",
    "doctor_appointment",
    "hotel_booking",
    "concierge",
    "other",
)
# Where an ask_user question goes: every configured channel, or only the event stream.
ASK_USER_MODES = ("any", "stream")
MAX_BRIEF = 4000


@dataclasses.dataclass(frozen=True, slots=True)
class StartRequest:
    """A call to start: whom to call and the task the agent carries out."""

    target_phone: str
    brief: str
    language: str = "auto"
    kind: str = "other"
    parsed_slots: dict[str, Any] | None = None
    ask_user_mode: str = "any"


def validate(request: StartRequest, *, allow_fictional_numbers: bool) -> StartRequest:
    """Check and normalise a start request (phone to E.164, trimmed brief).

    Raises:
        CallagentError: INVALID_ARGUMENT_BRIEF, INVALID_ARGUMENT_FIELD or
            INVALID_ARGUMENT_PHONE.
    """
    brief = request.brief.strip()
    if not brief:
        raise CallagentError("INVALID_ARGUMENT_BRIEF", "brief must not be empty")
    if len(brief) > MAX_BRIEF:
        raise CallagentError("INVALID_ARGUMENT_BRIEF", f"brief is longer than {MAX_BRIEF} chars")
    for field, value, allowed in (
        ("language", request.language, LANGUAGES),
        ("kind", request.kind, KINDS),
        ("ask_user_mode", request.ask_user_mode, ASK_USER_MODES),
    ):
        if value not in allowed:
            raise CallagentError(
                "INVALID_ARGUMENT_FIELD", f"{field} must be one of: {', '.join(allowed)}"
            )
    phone = phones.normalize(request.target_phone, allow_fictional=allow_fictional_numbers)
    return dataclasses.replace(request, target_phone=phone, brief=brief)
