"""When the callee starts hearing each model turn (`Playout.heard_at`), on a clock the test
moves by hand: frames leave inline from the task that queues them, so no real time passes."""

from __future__ import annotations

import json

import pytest

from media.call.playout import FRAME_S, Playout

T0 = 100.0
CHUNK = b"\x00\x10" * 480  # 20 ms of 24 kHz PCM16: exactly one 8 kHz frame


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Leg:
    """A Media Stream that only records what the playout sent."""

    stream_sid = "MZ-test"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> bool:
        self.sent.append(json.loads(text)["event"])
        return True

    async def close(self) -> None:
        pass

    @property
    def frames(self) -> int:
        return self.sent.count("media")


def playout(clock: Clock) -> tuple[Playout, Leg]:
    p = Playout(lead_ms=80, clock=clock)
    leg = Leg()
    p.attach(leg)
    return p, leg


async def test_a_turn_queued_behind_another_is_heard_when_the_first_runs_dry() -> None:
    clock = Clock()
    p, leg = playout(clock)
    await p.push_audio(CHUNK * 50)  # one second, faster than real time (as Gemini sends)
    await p.end_utterance()
    assert p.turns == 1 and p.heard_at(1) == T0
    assert leg.frames == 5  # only `lead_ms` ahead of the callee

    clock.now = T0 + 0.1
    await p.push_audio(CHUNK)  # the next turn starts while the first still plays
    first_turn_ends = T0 + 50 * FRAME_S
    assert p.heard_at(2) == pytest.approx(first_turn_ends)  # estimated from the queue

    while leg.frames <= 50:  # real time passes; the model keeps streaming turn two
        clock.now += FRAME_S
        await p.push_audio(CHUNK)
        assert p.heard_at(2) == pytest.approx(first_turn_ends)
    assert p.heard_at(2) == pytest.approx(first_turn_ends)  # now known: its frame was sent
    assert p.heard_at(1) == T0
    assert p.heard_at(3) is None


async def test_a_turn_after_the_line_went_quiet_is_heard_at_once() -> None:
    clock = Clock()
    p, _ = playout(clock)
    await p.push_audio(CHUNK * 3)
    await p.end_utterance()
    clock.now = T0 + 5.0
    await p.push_audio(CHUNK * 3)
    assert p.heard_at(1) == T0 and p.heard_at(2) == T0 + 5.0


async def test_a_barge_in_ends_the_turn_and_clears_twilios_buffer() -> None:
    clock = Clock()
    p, leg = playout(clock)
    await p.push_audio(CHUNK * 50)
    await p.end_utterance()
    await p.push_audio(CHUNK * 10)  # turn two, still queued behind turn one
    clock.now = T0 + 0.3
    await p.barge_in()
    assert p.heard_at(2) is None  # dropped before a frame of it left
    await p.push_audio(CHUNK * 2)  # the same model turn carries on after the barge-in
    assert leg.sent.count("clear") == 1
    assert p.turns == 3
    assert p.heard_at(3) == T0 + 0.3  # Twilio's buffer was cleared: it plays at once
    assert p.heard_at(1) == T0


async def test_only_recent_turns_are_remembered() -> None:
    clock = Clock()
    p, _ = playout(clock)
    for turn in range(1, Playout.KEEP_TURNS + 3):
        clock.now = T0 + turn
        await p.push_audio(CHUNK)
        await p.end_utterance()
    last = Playout.KEEP_TURNS + 2
    assert p.heard_at(last) == T0 + last
    assert p.heard_at(last - Playout.KEEP_TURNS + 1) == T0 + last - Playout.KEEP_TURNS + 1
    assert p.heard_at(last - Playout.KEEP_TURNS) is None
