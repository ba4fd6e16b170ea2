"""The telephony port: what core needs from a phone carrier, and nothing carrier-shaped.

Core's dial queue, cancel path and recording fetch talk only to `Telephony`; the Twilio
adapter (`telephony.twilio_rest`) implements it over the twilio SDK, and tests use the
in-memory `tests.fakes.telephony.FakeTelephony`. Every failure crosses this boundary as
`TelephonyError` (a `common.errors.ProviderError`), whose `retryable` flag is the only thing
a caller's retry policy reads: it is True only when the provider certainly did NOT act (a
5xx/429 answer, a refused connection), so a retried dial can never place a second call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Protocol

from common.errors import ProviderError

_DTMF_DIGITS = re.compile(r"[0-9*#w]{1,64}")


class TelephonyError(ProviderError):
    """The telephony provider refused or failed an operation.

    `message` never contains credentials; `retryable` is True only when repeating the
    operation cannot duplicate its effect (see `common.errors.ProviderError`).

    Attributes:
        status: the provider's HTTP status, when it answered.
        code: the provider's error code (Twilio's 5-digit codes), when it sent one.
    """

    provider = "twilio"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.code = code

    def __repr__(self) -> str:
        return (
            f"TelephonyError({self.message!r}, retryable={self.retryable}, "
            f"status={self.status}, code={self.code})"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Recording:
    """One recording the provider holds for a call.

    `status` is the provider's recording status (`completed` is the only one whose media
    is final); `duration_sec` is None while the provider does not know it yet. `url` is the
    provider's own URL of the media (what its recording callback calls `RecordingUrl`);
    it carries account identifiers and is stored, never shown.
    """

    sid: str
    call_sid: str
    status: str
    duration_sec: int | None
    url: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingMedia:
    """A recording's media being downloaded: read `chunks` once, in order.

    `content_type` and `content_length` are what the provider answered (`audio/mpeg` for
    MP3); `content_length` is None when it did not say.
    """

    content_type: str
    content_length: int | None
    chunks: AsyncIterator[bytes]


class Telephony(Protocol):
    """Place, steer and end outbound calls; fetch their recordings.

    Implementations own their network clients; `aclose()` releases them and must be
    awaited once at shutdown. All methods raise `TelephonyError` and nothing else for
    provider or transport failures.
    """

    async def dial(self, call_id: str, to: str) -> str:
        """Place an outbound call to `to` (E.164) for our `call_id`; return the call sid."""
        ...

    async def hang_up(self, call_sid: str) -> None:
        """End the call. Idempotent: a call that already ended is not an error."""
        ...

    async def send_dtmf(self, call_sid: str, call_id: str, digits: str) -> None:
        """Play `digits` (0-9 * # and w for a 0.5 s pause) into the call, then resume the
        media stream for `call_id` (the old stream ends; a new one starts)."""
        ...

    async def list_recordings(self, call_sid: str) -> list[Recording]:
        """The recordings the provider holds for a call (possibly none yet)."""
        ...

    def open_recording(
        self, recording_sid: str
    ) -> contextlib.AbstractAsyncContextManager[RecordingMedia]:
        """Start downloading the recording's MP3; the download stays open (and its bytes
        are read from the network as `chunks` is iterated) until the context exits. A
        failure while reading a chunk raises `TelephonyError` from the iteration."""
        ...

    async def aclose(self) -> None:
        """Release network resources. Further calls are a programming error."""
        ...


def check_dtmf_digits(digits: str) -> str:
    """Return `digits` if every character is one a carrier can play, else raise.

    Raises:
        TelephonyError: non-retryable, when `digits` is empty, too long or has other characters.
    """
    if not _DTMF_DIGITS.fullmatch(digits):
        raise TelephonyError(
            "DTMF digits must be 1-64 characters from 0-9, *, # and w", retryable=False
        )
    return digits
