"""What an operator sees of a real call: `/metrics` on gateway, core and media, JSON log lines
tagged with the call, and one trace across the three processes.

The stack is the venue stack of the end-to-end tests (REST → gateway → core → the twilio SDK →
the simulated carrier → media's bridge → the simulated Gemini Live and Deepgram), with spans
kept by the OpenTelemetry SDK's in-memory exporter. A second, smaller stack runs core's dial
queue for the queue series.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from common import logs
from common.metrics_server import MetricsServer
from core import main as server
from gateway.app import create_app as create_gateway
from tests.conftest import (
    eventually,
    make_gateway_settings,
    make_settings,
    new_customer,
    serve_asgi,
)
from tests.e2e.test_venues import World_, place, venue_stack
from tests.fakes.telephony import FakeTelephony

BRIEF = "Table for 2 tomorrow at 19:00 under Anna"

pytestmark = pytest.mark.timeout(240)

SPANS = InMemorySpanExporter()


class _WhileHere(SimpleSpanProcessor):
    """Keeps spans only while this module runs: the provider outlives it (OpenTelemetry
    refuses to replace one), and the rest of a `make test` run should not fill memory."""

    keeping = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.keeping:
            super().on_end(span)


_KEEPER = _WhileHere(SPANS)


def _install_tracer() -> None:
    """The SDK provider, once per process."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_KEEPER)
        trace.set_tracer_provider(provider)


@pytest.fixture(scope="module", autouse=True)
def keep_spans() -> Iterator[None]:
    _install_tracer()
    _KEEPER.keeping = True
    yield
    _KEEPER.keeping = False
    SPANS.clear()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient, url: str) -> Samples:
    response = await http.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every series whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


class Lines(logging.Handler):
    """Every log line as the JSON formatter renders it, call fields included."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.addFilter(logs.CallFields())
        self.setFormatter(logs.JsonFormatter())
        self.out = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        self.out.write(self.format(record) + "\n")

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
async def stack(admin_dsn: str, template_db: str) -> AsyncIterator[World_]:
    """The venue tests' in-process stack (its TwiML's traceparent parameter included in
    the Twilio wire check), traced from its start."""
    _install_tracer()
    async with venue_stack(admin_dsn, template_db) as world:
        yield world


async def follow_events(stack: World_, call_id: str, opened: asyncio.Event) -> int:
    """Read the call's SSE stream to its end (core closes it after the outcome)."""
    url = f"/calls/{call_id}/events"
    frames = 0
    async with stack.http.stream("GET", url, headers=stack.headers, timeout=120) as response:
        assert response.status_code == 200
        opened.set()
        async for line in response.aiter_lines():
            frames += line.startswith("event:")
    return frames


async def first_call_id(stack: World_, number: str) -> str:
    """The id of the newest call to `number` once it exists (the SSE follower needs it)."""
    row = None

    async def created() -> bool:
        nonlocal row
        row = await stack.core.pool.fetchrow(
            "SELECT call_id FROM calls WHERE target_phone = $1 ORDER BY created_at DESC", number
        )
        return row is not None

    await eventually(created)
    assert row is not None
    return str(row["call_id"])


def spans_of(trace_id: int) -> list[ReadableSpan]:
    return [s for s in SPANS.get_finished_spans() if s.context.trace_id == trace_id]


async def test_a_call_shows_in_metrics_logs_and_one_trace(stack: World_, log_lines: Lines) -> None:
    metrics_urls = {
        "gateway": f"{stack.gateway_url}/metrics",
        "media": f"{stack.media_url}/metrics",
        "core": f"http://127.0.0.1:{stack.core.metrics.port if stack.core.metrics else 0}/metrics",
    }
    assert stack.core.metrics is not None, "core serves /metrics on its own port"
    before = {name: await scrape(stack.http, url) for name, url in metrics_urls.items()}
    SPANS.clear()

    number = "+15550102"  # the venue offers another time: the agent asks the customer
    placing = asyncio.create_task(place(stack, number, BRIEF, answer="yes"))
    call_id = await first_call_id(stack, number)
    opened = asyncio.Event()
    following = asyncio.create_task(follow_events(stack, call_id, opened))
    await asyncio.wait_for(opened.wait(), 30)
    during = await scrape(stack.http, metrics_urls["gateway"])
    assert total(during, "callagent_sse_streams") >= 1
    call = await placing
    assert call["outcome_type"] == "booked" and call["call_id"] == call_id
    assert await asyncio.wait_for(following, 60) > 0

    after = {name: await scrape(stack.http, url) for name, url in metrics_urls.items()}

    # gateway: requests by route template (never by call id), SSE streams back to 0
    gw = after["gateway"]
    route = "/calls/{call_id}"
    assert total(gw, "callagent_http_requests_total", route=route, status="200") > total(
        before["gateway"], "callagent_http_requests_total", route=route, status="200"
    )
    assert total(gw, "callagent_http_requests_total", route="/calls", method="POST") >= 1
    assert total(gw, "callagent_http_request_duration_seconds_count", route=route) >= 1
    assert not any(call_id in str(labels) for (_, labels) in gw)
    assert total(gw, "callagent_http_requests_total", route="/metrics", status="200") >= 1
    assert total(gw, "callagent_http_requests_total", route="unmatched", status="200") == 0
    await eventually(lambda: _sse_closed(stack, metrics_urls["gateway"]))

    # core: RPCs by method and code, ask_user answered, a hold reserved and captured
    core = after["core"]
    create = "/callagent.v1.CallService/StartCall"
    assert total(core, "callagent_grpc_requests_total", method=create, code="OK") >= 1
    session = "/callagent.v1.MediaSessionService/Session"
    assert total(core, "callagent_grpc_request_duration_seconds_count", method=session) >= 1
    assert total(core, "callagent_ask_user_answer_seconds_count") > total(
        before["core"], "callagent_ask_user_answer_seconds_count"
    )
    assert total(core, "callagent_ask_user_answer_seconds_sum") > 0
    for action in ("reserved", "captured"):
        assert total(core, "callagent_credit_holds_total", action=action) > total(
            before["core"], "callagent_credit_holds_total", action=action
        )

    # media: the call counted live and gone again, its audio paced and measured
    media = after["media"]
    assert total(media, "callagent_media_active_calls") == 0
    assert total(media, "callagent_playout_frame_lateness_seconds_count") > total(
        before["media"], "callagent_playout_frame_lateness_seconds_count"
    )
    assert total(media, "callagent_http_requests_total", route="/twilio/status") >= 1
    assert ("callagent_provider_errors_total", frozenset()) not in media  # labelled only

    # logs: lines from core and media while handling the call carry its id (JSON)
    lines = [line for line in log_lines.parsed() if line.get("call_id") == call_id]
    loggers = {line["logger"].split(".")[0] for line in lines}
    assert {"core", "media"} <= loggers, loggers
    customer = lines[0].get("customer_id")
    assert customer and customer.startswith("cus_")
    # (the transcript merge job runs after the call, outside any request: call id only)
    core_lines = [
        line
        for line in lines
        if line["logger"].startswith("core") and line["logger"] != "core.app.merges"
    ]
    assert core_lines and all(line.get("customer_id") == customer for line in core_lines)
    assert all(line["message"] and line["level"] and line["time"] for line in lines)

    # one trace: the gateway's POST, core's CreateCall, media's call and its core session
    (post,) = [s for s in SPANS.get_finished_spans() if s.name == "gateway POST /calls"]
    in_trace = spans_of(post.context.trace_id)
    processes = {s.attributes.get("callagent.process") for s in in_trace if s.attributes}
    # (FastAPI adds spans of its own, with no process attribute)
    assert processes - {None} == {"gateway", "core", "media"}, [s.name for s in in_trace]
    names = {s.name for s in in_trace}
    assert f"core {create}" in names and "media call" in names and f"core {session}" in names
    # the bridge's lines (its task runs in media's call span) carry the POST's trace id;
    # a carrier callback is a request of its own, with a trace of its own
    bridge = [line for line in lines if line["logger"].startswith("media.call.tools")]
    assert bridge and {line.get("trace_id") for line in bridge} == {
        format(post.context.trace_id, "032x")
    }


async def _sse_closed(stack: World_, url: str) -> bool:
    return total(await scrape(stack.http, url), "callagent_sse_streams") == 0


async def test_barge_in_clear_latency_is_measured(stack: World_) -> None:
    before = await scrape(stack.http, f"{stack.media_url}/metrics")
    call = await place(stack, "+15550109", BRIEF)  # the venue talks over the agent
    assert call["outcome_type"] == "booked"
    after = await scrape(stack.http, f"{stack.media_url}/metrics")
    name = "callagent_playout_clear_seconds_count"
    assert total(after, name) > total(before, name)
    assert total(after, "callagent_playout_clear_seconds_sum") < total(after, name) * 0.5


async def test_the_dial_queue_reports_depth_and_wait(db_dsn: str, telephony: FakeTelephony) -> None:
    _install_tracer()
    settings = make_settings(call_queue_enabled=True, dial_cps=200, drainer_poll_sec=0.05)
    core = await server.start(settings, dsn=db_dsn, port=0, telephony=telephony)
    try:
        assert core.metrics is not None
        url = f"http://127.0.0.1:{core.metrics.port}/metrics"
        async with (
            serve_asgi(create_gateway(make_gateway_settings(core.port))) as gateway_url,
            httpx.AsyncClient(base_url=gateway_url) as http,
        ):
            before = await scrape(http, url)
            customer = await new_customer(core.pool)
            body = {"target_phone": "+15550100", "brief": BRIEF}
            queued = await http.post("/calls", json=body, headers={"X-API-Key": customer.api_key})
            assert queued.status_code == 202, queued.text

            async def dialed() -> bool:
                return len(telephony.dials) >= 1

            await eventually(dialed)
            after = await scrape(http, url)
        name = "callagent_dial_queue_wait_seconds_count"
        assert total(after, name) == total(before, name) + 1
        assert ("callagent_dial_queue_depth", frozenset()) in after
        assert total(after, "callagent_dial_queue_depth") == 0  # the one entry was claimed
        # no request is behind the dial: the drainer's own span starts the call's trace
        call_id = queued.json()["call_id"]
        dials = [s for s in SPANS.get_finished_spans() if s.name == "core dial"]
        assert any(s.attributes and s.attributes["callagent.call_id"] == call_id for s in dials)
    finally:
        await core.stop(grace=1)


def test_core_metrics_port_taken_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """Two cores on one host: the second runs without /metrics and says so."""
    first = MetricsServer.open("127.0.0.1", 0)
    assert first is not None
    try:
        body = httpx.get(f"http://127.0.0.1:{first.port}/metrics").text
        assert "# TYPE callagent_grpc_requests_total counter" in body
        with caplog.at_level(logging.ERROR):
            assert MetricsServer.open("127.0.0.1", first.port) is None
        assert any("metrics not served" in r.getMessage() for r in caplog.records)
    finally:
        first.close()
