"""Provider usage end to end on the core side: media's production `GrpcCoreLink` reports
running totals over a real MediaSession stream (repeated and replayed out of order), the
carrier's final status brings the call's duration, the merge records its batch audio, and
GET /calls/{id} shows the cost breakdown, to its owner only."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from core import main as server
from core.app import api_keys, usage
from core.app.provider_events import ProviderEvent, apply_provider_event
from core.domain.tasks import StartRequest
from media.call import core_link
from tests.conftest import INTERNAL_TOKEN, eventually, new_customer

EARLY = core_link.Usage(
    gemini_input_tokens=143,
    gemini_output_tokens=19,
    gemini_input_audio_tokens=120,
    gemini_input_text_tokens=23,
    gemini_output_audio_tokens=19,
    deepgram_live_ms=20_000,
)
FINAL = core_link.Usage(
    gemini_input_tokens=548,
    gemini_output_tokens=67,
    gemini_input_audio_tokens=460,
    gemini_input_text_tokens=88,
    gemini_output_audio_tokens=67,
    deepgram_live_ms=64_250,
)


async def stored(core: server.Core, call_id: str) -> dict[str, Any] | None:
    row = await core.pool.fetchrow("SELECT * FROM call_usage WHERE call_id = $1", call_id)
    return dict(row) if row is not None else None


async def test_usage_reports_count_once_and_the_call_shows_its_cost(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    request = StartRequest("+15550100", "Table for 2 at 19:00 under Anna")
    started = await core.calls.start(customer.customer_id, request)
    call_id, sid = started.call["call_id"], started.call["call_sid"]
    await apply_provider_event(
        core.calls, ProviderEvent(kind="status", call_sid=sid, status="in_progress")
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
        link = core_link.GrpcCoreLink(channel, INTERNAL_TOKEN)
        await link.attach(call_id, sid, "MZ" + "0" * 32, "media-test")
        link.send_usage(EARLY)
        link.send_usage(FINAL)
        link.send_usage(EARLY)  # a late copy of an older report: changes nothing
        link.send_usage(FINAL)  # the same report twice: counted once
        await link.aclose()

    def matches(row: dict[str, Any] | None) -> bool:
        return row is not None and row["deepgram_live_ms"] == FINAL.deepgram_live_ms

    await eventually(lambda: _check(core, call_id, matches))
    row = await stored(core, call_id)
    assert row is not None
    for field in usage.LIVE_FIELDS:
        assert row[field] == getattr(FINAL, field), field
    await apply_provider_event(
        core.calls,
        ProviderEvent(kind="status", call_sid=sid, status="completed", duration_sec=65),
    )
    await usage.record_batch(core.pool, call_id, 64.5)
    await usage.record_batch(core.pool, call_id, 64.5)  # a retried merge: counted once

    got = await http.get(f"/calls/{call_id}", headers={"X-API-Key": customer.api_key})
    assert got.status_code == 200, got.text
    body = got.json()
    cost = body["cost_breakdown"]
    lines = {(line["provider"], line["item"]): line for line in cost["lines"]}
    assert set(lines) == {
        ("gemini", "input_audio_tokens"),
        ("gemini", "input_text_tokens"),
        ("gemini", "output_audio_tokens"),
        ("deepgram", "live_audio"),
        ("deepgram", "batch_audio"),
        ("twilio", "call_minutes"),
    }
    assert lines["gemini", "input_audio_tokens"]["quantity"] == 460
    assert lines["gemini", "input_text_tokens"]["quantity"] == 88
    assert lines["gemini", "output_audio_tokens"]["quantity"] == 67
    assert lines["deepgram", "live_audio"]["quantity"] == pytest.approx(64.25)
    assert lines["deepgram", "batch_audio"]["quantity"] == pytest.approx(64.5)
    # 65 s of CallDuration is two started minutes, at the default list price.
    twilio = lines["twilio", "call_minutes"]
    assert (twilio["quantity"], twilio["unit"]) == (2, "minute")
    assert twilio["cost_usd"] == pytest.approx(2 * 0.014)
    assert lines["deepgram", "live_audio"]["cost_usd"] == pytest.approx(
        64.25 * 0.0077 / 60, abs=1e-6
    )
    assert lines["gemini", "input_audio_tokens"]["cost_usd"] == pytest.approx(
        460 * 3.0 / 1e6, abs=1e-6
    )
    for line in cost["lines"]:
        assert line["cost_usd"] == pytest.approx(
            line["quantity"] * line["unit_price_usd"], abs=1e-6
        )
    assert cost["total_usd"] == pytest.approx(sum(line["cost_usd"] for line in cost["lines"]))
    assert cost["currency"] == "USD"
    assert body["duration_sec"] == 65

    # The list view carries no breakdown; another customer's GET reads as a missing call.
    listed = await http.get("/calls", headers={"X-API-Key": customer.api_key})
    assert all(c.get("cost_breakdown") is None for c in listed.json())
    stranger = await new_customer(core.pool)
    foreign = await http.get(f"/calls/{call_id}", headers={"X-API-Key": stranger.api_key})
    missing = await http.get("/calls/no-such-call", headers={"X-API-Key": stranger.api_key})
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


async def test_a_call_media_never_reported_on_shows_only_what_core_measured(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    request = StartRequest("+15550100", "Table for 2 at 19:00 under Anna")
    started = await core.calls.start(customer.customer_id, request)
    call_id = started.call["call_id"]
    got = await http.get(f"/calls/{call_id}", headers={"X-API-Key": customer.api_key})
    assert got.status_code == 200
    assert got.json()["cost_breakdown"] == {"lines": [], "total_usd": 0.0, "currency": "USD"}


async def _check(core: server.Core, call_id: str, ok: Any) -> bool:
    return bool(ok(await stored(core, call_id)))
