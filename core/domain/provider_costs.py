"""What a call cost in provider usage: measured quantities times list prices, per provider.

An estimate for the operator, not an invoice (Vapi and Retell show the same kind of
breakdown): the prices are settings (`docs/calls.md` gives the defaults and their source).
Gemini tokens without a modality breakdown are priced as audio, the bulk of a phone call and
the dearer rate, so the estimate errs high. Twilio bills a call per started minute of its
`CallDuration`; Deepgram bills the seconds of audio it was sent.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

_PER_MILLION = 1_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class Prices:
    """List prices in USD, in the units the vendors quote them."""

    gemini_input_audio_per_mtok: float = 3.00
    gemini_input_text_per_mtok: float = 0.50
    gemini_output_audio_per_mtok: float = 12.00
    gemini_output_text_per_mtok: float = 2.00
    deepgram_live_per_min: float = 0.0077
    deepgram_batch_per_min: float = 0.0043
    twilio_per_min: float = 0.014


@dataclasses.dataclass(frozen=True, slots=True)
class CostLine:
    provider: str
    item: str
    quantity: float
    unit: str
    unit_price_usd: float
    cost_usd: float


@dataclasses.dataclass(frozen=True, slots=True)
class CostBreakdown:
    lines: tuple[CostLine, ...]
    total_usd: float
    currency: str = "USD"


def carrier_minutes(duration_sec: float | None) -> int:
    """Twilio's billed minutes: every started minute of the call's duration."""
    return math.ceil(duration_sec / 60) if duration_sec else 0


def breakdown(
    usage: Mapping[str, Any] | None, duration_sec: float | None, prices: Prices
) -> CostBreakdown:
    """The call's cost lines (only what it used) and their total.

    `usage` is the call's usage row (None: media reported nothing), `duration_sec` the
    carrier's CallDuration (None: the call was never answered).
    """
    u = usage or {}

    def count(key: str) -> int:
        return int(u.get(key) or 0)

    input_text = count("gemini_input_text_tokens")
    input_audio = max(count("gemini_input_tokens") - input_text, 0)
    output_text = count("gemini_output_text_tokens")
    output_audio = max(count("gemini_output_tokens") - output_text, 0)
    candidates = [
        ("gemini", "input_audio_tokens", input_audio, "token",
         prices.gemini_input_audio_per_mtok / _PER_MILLION),
        ("gemini", "input_text_tokens", input_text, "token",
         prices.gemini_input_text_per_mtok / _PER_MILLION),
        ("gemini", "output_audio_tokens", output_audio, "token",
         prices.gemini_output_audio_per_mtok / _PER_MILLION),
        ("gemini", "output_text_tokens", output_text, "token",
         prices.gemini_output_text_per_mtok / _PER_MILLION),
        ("deepgram", "live_audio", count("deepgram_live_ms") / 1000, "second",
         prices.deepgram_live_per_min / 60),
        ("deepgram", "batch_audio", count("deepgram_batch_ms") / 1000, "second",
         prices.deepgram_batch_per_min / 60),
        ("twilio", "call_minutes", carrier_minutes(duration_sec), "minute",
         prices.twilio_per_min),
    ]  # fmt: skip
    lines = tuple(
        CostLine(provider, item, quantity, unit, unit_price, round(quantity * unit_price, 6))
        for provider, item, quantity, unit, unit_price in candidates
        if quantity > 0
    )
    return CostBreakdown(lines, round(sum(line.cost_usd for line in lines), 6))
