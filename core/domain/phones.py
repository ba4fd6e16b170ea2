"""Phone numbers: E.164 validation with the `phonenumbers` library.

The simulated world lives behind fictional numbers +1 555 0100 … 0199 (written
`+15550100`), which are not valid NANP numbers; they are accepted only while the
simulated carrier is in use, so a real carrier is never asked to dial one.
"""

from __future__ import annotations

import re

import phonenumbers

from core.domain.errors import CallagentError

FICTIONAL = re.compile(r"^\+155501\d\d$")


def normalize(raw: str, *, allow_fictional: bool) -> str:
    """The E.164 form of `raw`.

    Raises:
        CallagentError: INVALID_ARGUMENT_PHONE with the reason.
    """
    text = raw.strip()
    compact = re.sub(r"[\s\-().]", "", text)
    if FICTIONAL.match(compact):
        if allow_fictional:
            return compact
        raise CallagentError(
            "INVALID_ARGUMENT_PHONE",
            f"{text} is a simulated-world number; it cannot be dialed on a real carrier",
        )
    if not text.startswith("+"):
        raise CallagentError(
            "INVALID_ARGUMENT_PHONE", "target_phone must be E.164: '+' then country code"
        )
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as err:
        raise CallagentError("INVALID_ARGUMENT_PHONE", f"not a phone number: {err}") from None
    if not phonenumbers.is_valid_number(number):
        raise CallagentError("INVALID_ARGUMENT_PHONE", f"{text} is not a valid phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
