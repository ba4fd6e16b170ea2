"""Agent lines timed from their turn's start-mark echo (the carrier's clock), waiting for it a
bounded time, else by our own estimate; in order, none lost. Playout on a hand-moved clock."""

from __future__ import annotations

import json

from media.call.agent_times import AgentTimes
from media.call.lines import Line
from media.call.playout import Playout

T0 = 100.0
CHUNK = b"\x00\x10" * 480  # 20 ms of 24 kHz PCM16: one 8 kHz frame


class Leg:
    stream_sid = "MZ-test"

    def __init__(self) -> None:
        self.marks: list[str] = []

    async def send(self, text: str) -> bool:
        message = json.loads(text)
        if message["event"] == "mark":
            self.marks.append(message["mark"]["name"])
        return True

    async def close(self) -> None:
        pass


class World:
    def __init__(self) -> None:
        self.now = T0
        self.stream_ms = 0.0  # what the carrier has sent us of the callee's audio
        self.playout = Playout(lead_ms=80, clock=lambda: self.now, stream_ms=lambda: self.stream_ms)
        self.leg = Leg()
        self.playout.attach(self.leg)
        self.times = AgentTimes(self.playout, T0, wait_s=1.5)

    async def turn(self, frames: int) -> None:
        await self.playout.push_audio(CHUNK * frames)
        await self.playout.end_utterance()


async def test_a_line_waits_for_its_echo_and_takes_the_carriers_time() -> None:
    w = World()
    await w.turn(10)
    assert w.leg.marks[0] == "turn-1"
    # The transcript is complete before the carrier has played a frame: it waits.
    assert w.times.add(Line("agent", "Hello.", at_ms=5, turn=1), w.now) == []
    w.stream_ms = 340.0  # the carrier played it 340 ms into the stream (a jitter buffer)
    w.playout.on_mark_echo("turn-1")
    assert w.times.ready(w.now) == [("Hello.", 340)]


async def test_no_echo_in_time_falls_back_to_our_estimate_and_keeps_order() -> None:
    w = World()
    await w.turn(10)
    w.now = T0 + 0.2  # the first turn ran dry after 100 ms, resumes now; the second follows
    await w.turn(10)
    assert w.times.add(Line("agent", "One.", 0, 1), w.now) == []
    assert w.times.add(Line("agent", "Two.", 0, 2), w.now) == []
    w.now += 1.0
    assert w.times.ready(w.now) == []  # still within the wait
    w.now += 0.5
    assert w.times.ready(w.now) == [("One.", 0), ("Two.", 300)]


async def test_a_cleared_turn_and_a_line_without_audio_are_not_held() -> None:
    w = World()
    await w.playout.push_audio(CHUNK * 10)
    await w.playout.barge_in()  # Twilio echoes pending marks at once on clear: not played
    w.playout.on_mark_echo("turn-1")
    assert w.times.add(Line("agent", "Cut.", 0, 1), w.now) == [("Cut.", 0)]
    assert w.times.add(Line("agent", "Text only.", 42, 1), w.now) == [("Text only.", 42)]


async def test_flush_sends_whatever_still_waits() -> None:
    w = World()
    await w.turn(10)
    assert w.times.add(Line("agent", "Bye.", 0, 1), w.now) == []
    assert w.times.ready(w.now, flush=True) == [("Bye.", 0)]
