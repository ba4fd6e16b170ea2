"""The cost breakdown's arithmetic: measured quantities times list prices, per provider."""

from __future__ import annotations

import pytest

from core.domain import provider_costs
from core.domain.provider_costs import CostLine, Prices

PRICES = Prices(
    gemini_input_audio_per_mtok=3.0,
    gemini_input_text_per_mtok=0.5,
    gemini_output_audio_per_mtok=12.0,
    gemini_output_text_per_mtok=2.0,
    deepgram_live_per_min=0.0077,
    deepgram_batch_per_min=0.0043,
    twilio_per_min=0.014,
)


@pytest.mark.parametrize(
    ("duration", "minutes"),
    [(None, 0), (0, 0), (0.4, 1), (59, 1), (60, 1), (60.2, 2), (125, 3)],
)
def test_the_carrier_bills_every_started_minute(duration: float | None, minutes: int) -> None:
    assert provider_costs.carrier_minutes(duration) == minutes


def test_each_provider_line_is_quantity_times_unit_price_and_the_total_sums_them() -> None:
    usage = {
        "gemini_input_tokens": 1_000_000,
        "gemini_input_text_tokens": 200_000,
        "gemini_input_audio_tokens": 800_000,
        "gemini_output_tokens": 500_000,
        "gemini_output_text_tokens": 100_000,
        "gemini_output_audio_tokens": 400_000,
        "deepgram_live_ms": 90_000,
        "deepgram_batch_ms": 120_000,
    }
    cost = provider_costs.breakdown(usage, 95.0, PRICES)
    by_item = {line.item: line for line in cost.lines}
    assert by_item["input_audio_tokens"] == CostLine(
        "gemini", "input_audio_tokens", 800_000, "token", 3e-6, 2.4
    )
    assert by_item["input_text_tokens"].cost_usd == pytest.approx(0.1)
    assert by_item["output_audio_tokens"].cost_usd == pytest.approx(4.8)
    assert by_item["output_text_tokens"].cost_usd == pytest.approx(0.2)
    live = by_item["live_audio"]
    assert (live.provider, live.quantity, live.unit) == ("deepgram", 90.0, "second")
    assert live.cost_usd == pytest.approx(0.01155)
    assert by_item["batch_audio"].cost_usd == pytest.approx(0.0086)
    call = by_item["call_minutes"]
    assert (call.provider, call.quantity, call.unit, call.cost_usd) == (
        "twilio",
        2,
        "minute",
        pytest.approx(0.028),
    )
    assert cost.total_usd == pytest.approx(sum(line.cost_usd for line in cost.lines))
    assert cost.total_usd == pytest.approx(2.4 + 0.1 + 4.8 + 0.2 + 0.01155 + 0.0086 + 0.028)
    assert cost.currency == "USD"


def test_tokens_without_a_modality_breakdown_are_priced_as_audio() -> None:
    cost = provider_costs.breakdown(
        {"gemini_input_tokens": 30, "gemini_output_tokens": 15}, None, PRICES
    )
    assert [(line.item, line.quantity) for line in cost.lines] == [
        ("input_audio_tokens", 30),
        ("output_audio_tokens", 15),
    ]


def test_a_call_that_used_nothing_costs_nothing_and_lists_nothing() -> None:
    cost = provider_costs.breakdown(None, None, PRICES)
    assert cost.lines == ()
    assert cost.total_usd == 0
