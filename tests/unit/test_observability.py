"""The pieces of observability that need no stack: log fields and formats, the route label,
playout's timing series, and docs and dashboard that name every series."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib

import httpx
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from common import logs, metrics
from common.http_metrics import HttpMetrics, metrics_endpoint
from tests.unit.test_playout import CHUNK, Clock, playout

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERIES = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("media.call.bridge", logging.INFO, __file__, 1, message, None, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    logs.CallFields().filter(rec)
    return rec


def test_every_series_is_documented_and_on_the_dashboard() -> None:
    docs = (ROOT / "docs" / "observability.md").read_text()
    dashboard = (ROOT / "deploy" / "grafana" / "callagent.json").read_text()
    json.loads(dashboard)
    names = [m._name for m in SERIES]  # the exposed name (a counter adds `_total`)
    assert len(names) == 14
    assert all(name.startswith("callagent_") for name in names)
    assert [n for n in names if f"`{n}" not in docs] == []
    assert [n for n in names if n not in dashboard] == []


def test_a_bound_call_id_lands_on_every_line_as_json() -> None:
    async def a_call() -> dict[str, object]:
        logs.bind(call_id="call_1", customer_id="cus_1")
        return json.loads(logs.JsonFormatter().format(record("tool call", tool="end_call")))

    line = asyncio.run(a_call())
    assert line["call_id"] == "call_1" and line["customer_id"] == "cus_1"
    assert line["message"] == "tool call" and line["tool"] == "end_call"
    assert line["level"] == "INFO" and line["logger"] == "media.call.bridge"
    assert "call_id" not in json.loads(logs.JsonFormatter().format(record("outside")))


def test_an_explicit_field_wins_and_bound_blocks_are_undone() -> None:
    with logs.bound(call_id="call_outer"):
        assert record("x", call_id="call_given").call_id == "call_given"  # type: ignore[attr-defined]
        with logs.bound(call_id="call_inner", customer_id=None):
            assert logs.current() == {"call_id": "call_inner"}
        assert logs.current() == {"call_id": "call_outer"}
        text = logs.TextFormatter().format(record("said"))
    assert text.endswith("said [call_id=call_outer]")
    assert logs.current() == {}


def test_requests_are_labelled_by_route_template() -> None:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["call_id"])

    app = Starlette(
        routes=[Route("/calls/{call_id}", echo), Route("/metrics", metrics_endpoint)],
        middleware=[Middleware(HttpMetrics)],
    )

    async def run() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/calls/call_abc")).text == "call_abc"
            assert (await http.get("/nowhere")).status_code == 404
            return (await http.get("/metrics")).text

    before = value(
        "callagent_http_requests_total", route="/calls/{call_id}", method="GET", status="200"
    )
    unmatched = value(
        "callagent_http_requests_total", route="unmatched", method="GET", status="404"
    )
    scraped = asyncio.run(run())
    assert "call_abc" not in scraped
    after = value(
        "callagent_http_requests_total", route="/calls/{call_id}", method="GET", status="200"
    )
    assert after == before + 1
    assert (
        value("callagent_http_requests_total", route="unmatched", method="GET", status="404")
        == unmatched + 1
    )


def test_playout_reports_the_worst_late_frame_each_second_and_clear_latency() -> None:
    async def run() -> None:
        clock = Clock()
        p, leg = playout(clock)
        await p.push_audio(CHUNK)  # a turn's first frame: nothing to be late against
        for i in range(1, 60):
            clock.now += 0.02 + (0.05 if i == 30 else 0.0)  # one stall of 50 ms
            await p.push_audio(CHUNK)
        assert leg.frames == 60
        await p.barge_in()
        assert "clear" in leg.sent

    count = value("callagent_playout_frame_lateness_seconds_count")
    total = value("callagent_playout_frame_lateness_seconds_sum")
    clears = value("callagent_playout_clear_seconds_count")
    asyncio.run(run())
    assert value("callagent_playout_frame_lateness_seconds_count") == count + 1
    assert abs(value("callagent_playout_frame_lateness_seconds_sum") - total - 0.05) < 1e-6
    assert value("callagent_playout_clear_seconds_count") == clears + 1
