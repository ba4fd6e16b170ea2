"""Every Prometheus series callagent exports, in one place, so docs and dashboards have one list.

Each process registers all of them (the default registry) and fills the ones it owns; a series
a process never touches stays at zero or without samples. Labels are bounded sets (routes by
template, gRPC methods, status codes, provider names): never a call id, which would make one
series per call. `docs/observability.md` describes each series.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Requests last from milliseconds (a GET) to seconds (a dial through the carrier).
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Audio timing: a frame is 20 ms, a barge-in should clear within a few frames.
_AUDIO = (0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
# Waits measured by people: a queued dial, a question to the customer.
_HUMAN = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

HTTP_REQUESTS = Counter(
    "callagent_http_requests_total",
    "HTTP requests served, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "callagent_http_request_duration_seconds",
    "Time to the response's status line (an SSE stream counts until its headers).",
    ["route", "method"],
    buckets=_LATENCY,
)
SSE_STREAMS = Gauge("callagent_sse_streams", "Open SSE event streams in this gateway.")

GRPC_REQUESTS = Counter(
    "callagent_grpc_requests_total",
    "gRPC calls served by core, by method and status code.",
    ["method", "code"],
)
GRPC_LATENCY = Histogram(
    "callagent_grpc_request_duration_seconds",
    "Duration of each gRPC call served by core (a stream counts until it ends).",
    ["method"],
    buckets=_LATENCY,
)

DIAL_QUEUE_DEPTH = Gauge(
    "callagent_dial_queue_depth",
    "Calls waiting in the dial queue, as the drainer leader last counted (0 elsewhere).",
)
DIAL_WAIT = Histogram(
    "callagent_dial_queue_wait_seconds",
    "Time a queued call waited before the drainer claimed it.",
    buckets=_HUMAN,
)
ASK_USER_LATENCY = Histogram(
    "callagent_ask_user_answer_seconds",
    "Time from an ask_user question to the customer's answer.",
    buckets=_HUMAN,
)
CREDIT_HOLDS = Counter(
    "callagent_credit_holds_total",
    "Credit holds by what happened to them: reserved, captured, released.",
    ["action"],
)

ACTIVE_CALLS = Gauge(
    "callagent_media_active_calls",
    "Live calls (bridges) in this media process: the autoscaling signal.",
)
FRAME_LATENESS = Histogram(
    "callagent_playout_frame_lateness_seconds",
    "Worst lateness of an outbound frame against its pacing deadline, per second of audio.",
    buckets=_AUDIO,
)
CLEAR_LATENCY = Histogram(
    "callagent_playout_clear_seconds",
    "Time from a barge-in to the `clear` sent to the carrier.",
    buckets=_AUDIO,
)
STREAM_RELAYS = Counter(
    "callagent_media_stream_relays_total",
    "DTMF re-connect streams that reached a media pod other than the call's owner, by result:"
    " relayed (piped to the owner), owner_unreachable (closed 1011), owner_refused (1008).",
    ["result"],
)
PROVIDER_ERRORS = Counter(
    "callagent_provider_errors_total",
    "Failures of outside providers, by provider and kind (retryable, fatal, ear_lost, …).",
    ["provider", "kind"],
)


def exposition() -> tuple[bytes, str]:
    """The current values in Prometheus' text format, with its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
