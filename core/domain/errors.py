"""The one table of error reasons, and the error type every core rule raises.

A rule raises `CallagentError(REASON, message)`. The RPC layer turns it into a gRPC
status whose details carry a `google.rpc.ErrorInfo` (domain `callagent.dev`, the
reason, and metadata including the HTTP status the public contract names), so the
gateway can answer without a table of its own. docs/errors.md lists every reason.
"""

from __future__ import annotations

import dataclasses
import enum


class GrpcCode(enum.Enum):
    """The canonical gRPC status codes our reasons use, by name; the RPC layer maps each to
    `grpc.StatusCode` of the same name, so this module stays free of the grpc package."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    UNAUTHENTICATED = "UNAUTHENTICATED"


@dataclasses.dataclass(frozen=True, slots=True)
class Reason:
    """One machine-readable reason: its gRPC code, HTTP status and meaning.

    `public_code` overrides the HTTP body's `code` where the contract names it
    differently (the idempotency errors are lower-case there).
    """

    name: str
    code: GrpcCode
    http_status: int
    meaning: str
    public_code: str | None = None


_TABLE: list[Reason] = [
    Reason(
        "UNAUTHENTICATED_KEY",
        GrpcCode.UNAUTHENTICATED,
        401,
        "The X-API-Key header is missing, unknown or revoked.",
    ),
    Reason(
        "UNAUTHENTICATED_CONTEXT",
        GrpcCode.UNAUTHENTICATED,
        401,
        "The X-Gateway-Context header is malformed, unsigned, tampered or expired.",
    ),
    Reason(
        "PERMISSION_DENIED_ADMIN",
        GrpcCode.PERMISSION_DENIED,
        403,
        "The operation needs an admin key.",
    ),
    Reason(
        "NOT_FOUND",
        GrpcCode.NOT_FOUND,
        404,
        "No such resource for this customer (another customer's looks the same).",
    ),
    Reason(
        "QUOTA_EXCEEDED",
        GrpcCode.RESOURCE_EXHAUSTED,
        402,
        "Reserving credits for this call would exceed the monthly quota.",
    ),
    Reason(
        "CONCURRENCY_LIMIT",
        GrpcCode.RESOURCE_EXHAUSTED,
        409,
        "The customer already has max_concurrent_calls calls in flight.",
    ),
    Reason(
        "MAINTENANCE",
        GrpcCode.UNAVAILABLE,
        503,
        "An admin-set maintenance window gates new calls; see message and resume_at.",
    ),
    Reason(
        "DIAL_FAILED",
        GrpcCode.UNAVAILABLE,
        502,
        "The telephony provider refused the call; the reservation was released.",
    ),
    Reason(
        "CARRIER_ERROR",
        GrpcCode.UNAVAILABLE,
        502,
        "The telephony provider failed the request (e.g. serving a recording); retry later.",
    ),
    Reason(
        "STREAM_LIMIT",
        GrpcCode.RESOURCE_EXHAUSTED,
        503,
        "This gateway process serves its maximum number of event streams.",
    ),
    Reason(
        "INVALID_ARGUMENT_PHONE",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "target_phone is not a valid E.164 number.",
    ),
    Reason(
        "INVALID_ARGUMENT_BRIEF",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "brief is empty or too long.",
    ),
    Reason(
        "INVALID_ARGUMENT_FIELD",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "A request field has a value outside its allowed set or range; see message.",
    ),
    Reason(
        "INVALID_ARGUMENT_WEBHOOK_URL",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "The webhook URL is not HTTPS, or its host is or resolves to a private address.",
    ),
    Reason(
        "INVALID_ARGUMENT_STATUS",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "The status filter is not one of the allowed values listed in the message.",
    ),
    Reason(
        "INVALID_ARGUMENT_LIMIT",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "A limit is outside its allowed range.",
    ),
    Reason(
        "INVALID_ARGUMENT_INPUT",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "A skill's input does not match its input_schema; metadata.field names the field.",
    ),
    Reason(
        "ASK_USER_CHANNEL_MISSING",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "ask_user_mode 'any' needs a webhook or a linked Telegram chat; or use 'stream'.",
    ),
    Reason(
        "IDEMPOTENCY_KEY_BLANK",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "The Idempotency-Key header was sent empty or whitespace-only; omit it for no key.",
        "idempotency_key_blank",
    ),
    Reason(
        "IDEMPOTENCY_KEY_TOO_LONG",
        GrpcCode.INVALID_ARGUMENT,
        400,
        "The Idempotency-Key is longer than 255 characters.",
        "idempotency_key_too_long",
    ),
    Reason(
        "IDEMPOTENCY_CONFLICT",
        GrpcCode.ALREADY_EXISTS,
        409,
        "The Idempotency-Key was used with a different request body.",
        "idempotency_conflict",
    ),
    Reason(
        "IDEMPOTENCY_IN_PROGRESS",
        GrpcCode.ABORTED,
        409,
        "The first request with this Idempotency-Key is still running; retry the same key.",
        "idempotency_in_progress",
    ),
    Reason(
        "IDEMPOTENCY_STATE_UNKNOWN",
        GrpcCode.ABORTED,
        409,
        "The first request with this key stalled and may have dialed: check GET /calls?since= "
        "before retrying with a new key.",
        "idempotency_state_unknown",
    ),
    Reason(
        "ILLEGAL_TRANSITION",
        GrpcCode.FAILED_PRECONDITION,
        409,
        "The call's current status does not allow that change (see docs/calls.md).",
    ),
    Reason(
        "INTERNAL",
        GrpcCode.INTERNAL,
        500,
        "An unexpected server error; it is logged with the request's method.",
    ),
]

REASONS: dict[str, Reason] = {reason.name: reason for reason in _TABLE}


class CallagentError(Exception):
    """A rule was broken; `reason` is a key of REASONS.

    Attributes:
        reason: the machine-readable reason name.
        message: a sentence for humans.
        metadata: extra string fields shown to the client (e.g. resume_at).
    """

    def __init__(self, reason: str, message: str, **metadata: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown error reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata

    @property
    def spec(self) -> Reason:
        return REASONS[self.reason]


def not_found(what: str) -> CallagentError:
    """The single NOT_FOUND shape, so foreign and missing resources look identical."""
    return CallagentError("NOT_FOUND", f"{what} not found")
