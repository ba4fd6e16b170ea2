"""The drainer's pacing rule, on a simulated clock: dials are 1/DIAL_CPS apart, a refund
returns the slot, and idle time never banks a burst."""

from __future__ import annotations

import itertools

from core.app.drainer import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_events_are_spaced_one_interval_apart() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5.0, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(150):
        await bucket.take()
        times.append(clock.now)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {0.2}
    assert round(times[-1] - times[0], 9) == 29.8  # 150 dials in 30 s at 5/s


async def test_idle_time_does_not_bank_a_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5.0, clock=clock, sleep=clock.sleep)
    await bucket.take()
    clock.now += 60  # a quiet minute
    await bucket.take()
    await bucket.take()
    assert [round(s, 9) for s in clock.slept] == [
        0.2
    ]  # the second take after the pause waits a full interval


async def test_refund_gives_the_slot_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    await bucket.take()
    await bucket.take()  # waits 0.5 s for its slot
    bucket.refund()  # nothing was claimed in that slot
    await bucket.take()  # takes the refunded slot: no extra wait
    assert [round(s, 9) for s in clock.slept] == [0.5]
