"""The merged transcript against the truth, on every simulated venue: the sim knows when
each word was spoken (on the recording's clock), so every merged turn's start is checked
to within 150 ms of it, barge-in overlaps (+15550109) included. Each call's merge is ready
within 30 s of its end, and the event stream stays open until `transcript_ready`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sim.truth import TrueTurn, true_turns
from tests.e2e.test_venues import (  # noqa: F401  # the shared world
    World_,
    merged_after_end,
    place,
    stack,
)

pytestmark = pytest.mark.timeout(600)

TOLERANCE_MS = 150
BRIEF = "Table for 2 tomorrow at 19:00 under Anna"
CALLS: dict[str, dict[str, Any]] = {
    "+15550100": {},
    "+15550101": {},
    "+15550102": {"answer": "yes"},
    "+15550103": {},
    "+15550104": {},
    "+15550105": {},
    "+15550106": {},
    "+15550107": {},
    "+15550108": {"language": "ru", "brief": "Столик на двоих завтра в 19:00 на имя Анна"},
    "+15550109": {},
}


def misplaced(merged: list[dict[str, Any]], truth: list[TrueTurn]) -> list[str]:
    """Each merged turn against the true turn of its speaker nearest in time, and each
    true turn against the merged ones: what is further than TOLERANCE_MS apart."""
    problems = []
    for turn in merged:
        same = [t for t in truth if t.speaker == turn["speaker"]]
        nearest = min(same, key=lambda t: abs(t.start_ms - turn["start_ms"]), default=None)
        if nearest is None or abs(nearest.start_ms - turn["start_ms"]) > TOLERANCE_MS:
            problems.append(f"merged {turn['speaker']} {turn['start_ms']} {turn['text']!r}")
    for t in truth:
        same = [m for m in merged if m["speaker"] == t.speaker]
        if not any(abs(m["start_ms"] - t.start_ms) <= TOLERANCE_MS for m in same):
            problems.append(f"true {t.speaker} {t.start_ms} {t.text!r} has no merged turn")
    return problems


async def test_every_venue_merges_within_150_ms_of_the_truth(stack: World_) -> None:  # noqa: F811
    async def one(number: str, extra: dict[str, Any]) -> dict[str, Any]:
        options = dict(extra)
        brief = options.pop("brief", BRIEF)
        call = await place(stack, number, brief, **options)
        call["merged"] = await merged_after_end(stack, call)
        return call

    # Three at a time: ten real-time calls at once would starve 2 cores of the audio clock.
    gate = asyncio.Semaphore(3)

    async def gated(number: str, extra: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await one(number, extra)

    calls = await asyncio.gather(*(gated(n, x) for n, x in CALLS.items()))
    report = {}
    for number, call in zip(CALLS, calls, strict=True):
        merged = call["merged"]
        if call["status"] in ("busy", "no_answer"):
            assert merged["turns"] == [], number  # nobody answered: nothing to merge
            continue
        conv = stack.world.get(call["call_sid"])
        assert conv is not None, number
        truth = true_turns(conv)
        assert truth, number
        assert merged["merge"] == "recording" and merged["degraded"] is False, (number, merged)
        report[number] = misplaced(merged["turns"], truth)
        types = [e["type"] for e in call["events"]]
        assert "outcome" in types
    bad = {number: problems for number, problems in report.items() if problems}
    for number in bad:  # what was merged against what was said and reported live, to see why
        call = calls[list(CALLS).index(number)]
        merged = call["merged"]
        print(number, "merged:", [(t["speaker"], t["start_ms"]) for t in merged["turns"]])
        print(number, "delta:", merged.get("calibration_delta_ms"))
        print(
            number,
            "live:",
            [(ln["speaker"], ln.get("offset_ms")) for ln in call["transcript_full"]],
        )
        truth = true_turns(stack.world.get(call["call_sid"]))
        print(number, "truth:", [(t.speaker, t.start_ms) for t in truth])
    assert not bad, "\n".join(f"{n}: {p}" for n, p in bad.items())
    barged = calls[list(CALLS).index("+15550109")]["merged"]["turns"]
    assert any(t.get("overlap_with_next") for t in barged), barged
