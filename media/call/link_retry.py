"""How a call's core link retries: which answers are final, how long it waits, and how a
failure is named in the logs (`media.call.core_link`)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import grpc

# A session that breaks sooner than this after attaching (a core that accepts and then fails
# every write) keeps backing off instead of retrying at full speed.
STEADY_S = 5.0

# Attach answers that will not change by retrying: the call is gone or we may not attach.
REFUSALS = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


def delays(base_s: float, cap_s: float) -> Iterator[float]:
    """Doubling waits from `base_s` to `cap_s`, jittered so the calls of a restarted replica
    do not all retry in step."""
    delay = base_s
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(delay * 2, cap_s)


def why(exc: BaseException) -> str:
    """A failure's name for a log line: the gRPC status and details, else the type."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details() or ''}"[:200]
    return type(exc).__name__
