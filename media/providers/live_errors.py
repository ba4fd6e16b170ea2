"""Gemini Live failures as one error type with a safe message and a retry decision.

Kept apart from the session (`media.providers.gemini_live`, which re-exports the error) so the
mapping from SDK, websockets and TLS failures reads as one table.
"""

from __future__ import annotations

import logging
import ssl

import websockets.exceptions
from google.genai import errors as genai_errors

from common.errors import ProviderError

logger = logging.getLogger(__name__)


class GeminiLiveError(ProviderError):
    """Gemini Live failed; `retryable` is False for credentials and bad requests.

    `code` is the websocket close code or HTTP status, when the server sent one.
    """

    provider = "gemini_live"

    def __init__(self, message: str, *, retryable: bool, code: int | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code


def seconds(duration: str | None) -> float:
    """'10s' / '1.5s' (protobuf Duration JSON) in seconds; 0 when absent or malformed."""
    try:
        return float((duration or "").strip().removesuffix("s"))
    except ValueError:
        return 0.0


def classify(exc: BaseException) -> GeminiLiveError:
    """Map SDK / websockets / TLS failures to one error with a safe message and retryability."""
    if isinstance(exc, GeminiLiveError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        reason = exc.details if isinstance(exc.details, str) else (exc.message or "")
        detail = f"close {code}: {reason[:200]}" if reason else f"close {code}"
        if code == 1008:
            return GeminiLiveError(
                f"gemini live rejected the API key or policy ({detail})", retryable=False, code=code
            )
        if code in (1002, 1003, 1007, 1009, 1010) or (400 <= code < 500 and code not in (408, 429)):
            return GeminiLiveError(
                f"gemini live rejected the request ({detail})", retryable=False, code=code
            )
        return GeminiLiveError(
            f"gemini live connection closed ({detail})", retryable=True, code=code
        )
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        status = exc.response.status_code
        retryable = status in (408, 429) or status >= 500
        what = "the API key" if status in (401, 403) else "the connection"
        return GeminiLiveError(
            f"gemini live refused {what} (HTTP {status})", retryable=retryable, code=status
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return GeminiLiveError("gemini live TLS certificate not trusted", retryable=False)
    if isinstance(exc, OSError | TimeoutError | websockets.exceptions.WebSocketException):
        return GeminiLiveError(f"gemini live unreachable ({type(exc).__name__})", retryable=True)
    logger.error("unexpected gemini live failure", exc_info=exc)
    return GeminiLiveError(f"gemini live failed ({type(exc).__name__})", retryable=False)
