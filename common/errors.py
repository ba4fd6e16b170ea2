"""The one base for failures of an outside provider (carrier, Telegram, Gemini, Deepgram).

Adapters raise a subclass with `retryable` set by the provider's rules (a 5xx or 429 is,
a refused request is not), so callers decide on retries from one attribute whatever the
provider; the message never carries a secret (adapters raise `from None` where the
underlying exception could). Each one is counted as it is made, by its class's `provider`
and whether it is retryable (`callagent_provider_errors_total`).
"""

from __future__ import annotations

from typing import ClassVar

from common import metrics


class ProviderError(Exception):
    """An outside provider failed.

    Attributes:
        message: what failed, safe to log.
        retryable: True when repeating the request is safe and may succeed.
    """

    provider: ClassVar[str] = "unknown"

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        metrics.PROVIDER_ERRORS.labels(self.provider, "retryable" if retryable else "fatal").inc()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, retryable={self.retryable})"
