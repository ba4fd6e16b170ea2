"""The model's voice to the phone: 24 kHz PCM -> 8 kHz μ-law frames, paced, marked, clearable.

Twilio plays whatever it is sent as soon as it can and keeps a buffer of the rest, so the only
way to make a barge-in take effect at once is to keep that buffer short: frames leave here on
`time.monotonic()` no more than `lead_ms` ahead of what the callee is hearing, and everything
later waits in a local queue that `barge_in()` can drop. A barge-in also resets the resampler
and the framer (their history is pre-interruption audio) and sends `clear`, which Twilio
applies to its own buffer; no frame queued before the barge-in can be sent after that `clear`,
because the queue is emptied synchronously and the leg has one writer at a time: what is due
is sent inline by the task that queued it (no task switch on the hot path), and `run()` sends
the paced remainder; a writer that finds a send in progress leaves its work to that sender.

After each model utterance a `mark` follows its last frame; Twilio echoes it once the callee
has heard everything before it (or at once on `clear`, which is why marks pending at a
barge-in are remembered as cleared rather than heard). `wait_drained()` is how the bridge
lets a goodbye play out before it hangs up.

Each model turn (the audio between two `end_utterance()`/`barge_in()` calls) is numbered, and
the time the callee starts hearing its first frame is kept (`heard_at()`): that frame plays at
max(send time, when Twilio's buffer runs dry), which is when the agent's line really starts on
the recording, unlike the arrival of its first transcript chunk. That estimate is on our own
clock, which a stalled event loop or a slow network skews against the carrier's; so, given
`stream_ms` (how much of the callee's audio has arrived: the carrier's clock, read in order
with the echoes on the same socket), a `turn-N` mark goes just before each turn's first frame.
Twilio echoes it when playback reaches that frame, and `heard_on_stream()` then says where on
the stream the turn began, exactly as the carrier played (and recorded) it.

The leg (one Twilio Media Stream) can be swapped: after DTMF the old stream stops and a new
one arrives for the same call; queued audio then continues on the new stream.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Protocol

from common import metrics
from media.codec import audio, twilio_codec

FRAME_S = 0.02
LATENESS_WINDOW = 50  # frames (1 s of audio) per lateness observation: observing costs ~2 µs


class StreamLeg(Protocol):
    """One Twilio Media Streams websocket, as far as the bridge writes to it."""

    @property
    def stream_sid(self) -> str: ...

    async def send(self, text: str) -> bool:
        """Send one text message; False (never an exception) once the socket is gone."""
        ...

    async def close(self) -> None: ...


@dataclasses.dataclass(slots=True)
class _Mark:
    name: str
    turn: int = 0  # a turn-start mark: its echo says when that turn began to play


@dataclasses.dataclass(slots=True)
class _TurnStart:
    """Queued before a turn's first frame: the frame after it starts turn `turn`."""

    turn: int


@dataclasses.dataclass(slots=True)
class PlayoutStats:
    """Counters for logs and benchmarks."""

    frames_sent: int = 0
    frames_dropped: int = 0  # queued locally and dropped by a barge-in
    clears: int = 0
    marks_sent: int = 0
    marks_heard: int = 0
    marks_cleared: int = 0


class Playout:
    """Paced, clearable outbound audio for one call; `run()` must run for paced frames."""

    KEEP_TURNS = 16  # start times kept for `heard_at()`; the bridge asks about recent turns

    def __init__(
        self,
        lead_ms: int = 80,
        *,
        clock: Callable[[], float] = time.monotonic,
        stream_ms: Callable[[], float] | None = None,
    ) -> None:
        self._lead_s = lead_ms / 1000
        self._clock = clock
        self._stream_ms = stream_ms
        self._turn_marks: dict[str, int] = {}  # sent turn-start marks not yet echoed
        self._heard_ms: dict[int, float] = {}  # turn -> stream ms its first frame played
        self._down = audio.Downsampler24to8()
        self._framer = audio.OutboundFramer()
        self._queue: collections.deque[bytes | _Mark | _TurnStart] = collections.deque()
        self._leg: StreamLeg | None = None
        self._clear_pending = False
        self._play_end = 0.0  # `clock` time Twilio's buffer runs dry, as far as we know
        self._unheard: collections.deque[str] = collections.deque()  # sent, not echoed
        self._cleared: set[str] = set()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._names = itertools.count(1)
        self._since_mark = False  # audio queued since the last mark
        self._sending = False  # a flush is in progress (the leg has one writer at a time)
        self._in_turn = False  # audio queued since the last end_utterance/barge_in
        self._stamp = 0  # the turn whose first frame is the next one sent (0: none)
        self._heard: dict[int, float] = {}  # turn -> clock time its first frame plays
        self.turns = 0  # model turns with audio so far
        self.stats = PlayoutStats()
        self._barged_at = 0.0  # `clock` time of the barge-in whose `clear` is pending
        self._late_max = 0.0  # worst frame lateness in the current window

    # ---- inputs ---------------------------------------------------------------------------

    def attach(self, leg: StreamLeg) -> None:
        """Write to `leg` from now on (a new stream of the same call)."""
        self._forget_unheard()
        self._leg = leg
        self._clear_pending = False
        self._play_end = 0.0
        self._wake.set()  # queued audio continues on the new stream
        self._changed()

    def detach(self, leg: StreamLeg) -> None:
        """`leg` ended; keep the queue for the next stream, if one comes."""
        if self._leg is leg:
            self._leg = None
            # Nothing will echo what the old stream had buffered: stop waiting for it.
            self._forget_unheard()
            self._changed()

    async def push_audio(self, pcm24k: bytes) -> None:
        """Queue model speech (PCM16 24 kHz, any chunk size) as whole 20 ms μ-law frames and
        send what is already due."""
        pcm8k = self._down.process(pcm24k)
        if not pcm8k:
            return
        frames = self._framer.push(audio.pcm16_to_ulaw(pcm8k))
        if frames:
            self._enqueue(frames)
            self._since_mark = True
            await self._kick()

    async def end_utterance(self) -> str | None:
        """The model finished a turn: send its tail and a mark; returns the mark's name."""
        tail = self._framer.flush(pad=True)
        self._enqueue(tail)
        self._in_turn = False
        if not (tail or self._since_mark):
            return None
        self._since_mark = False
        name = f"utt-{next(self._names)}"
        self._queue.append(_Mark(name))
        await self._kick()
        return name

    async def barge_in(self) -> int:
        """Drop unsent audio, reset the converters and send `clear` now; returns the frames
        dropped locally."""
        dropped = sum(1 for item in self._queue if isinstance(item, bytes))
        self._queue.clear()
        self._down.reset()
        self._framer.clear()
        self._since_mark = False
        self._in_turn = False
        self._stamp = 0
        self._cleared.update(self._unheard)
        self.stats.frames_dropped += dropped
        if self._leg is not None:
            self._clear_pending = True
            self._barged_at = self._clock()
        await self._kick()
        return dropped

    def on_mark_echo(self, name: str) -> None:
        """Twilio echoed `name`: everything sent before it was heard (or cleared)."""
        if name not in self._unheard:
            return
        while self._unheard:
            done = self._unheard.popleft()
            turn = self._turn_marks.pop(done, 0)
            if done in self._cleared:
                self._cleared.discard(done)
                self.stats.marks_cleared += 1
            else:
                self.stats.marks_heard += 1
                if turn and done == name and self._stream_ms is not None:
                    self._heard_ms[turn] = self._stream_ms()
                    self._heard_ms.pop(turn - self.KEEP_TURNS, None)
            if done == name:
                break
        self._changed()

    # ---- observations ---------------------------------------------------------------------

    @property
    def drained(self) -> bool:
        """Nothing queued here and every sent mark echoed: the callee heard it all."""
        return not self._queue and not self._unheard and not self._clear_pending

    async def wait_drained(self) -> None:
        while not self.drained:
            self._drained.clear()
            await self._drained.wait()

    def heard_at(self, turn: int) -> float | None:
        """When (on `clock`) the callee starts hearing turn `turn`'s first frame: known once
        it is sent, estimated from the frames ahead while it waits here; None if it never
        plays (dropped by a barge-in) or is unknown."""
        if turn in self._heard:
            return self._heard[turn]
        start = max(self._clock(), self._play_end)
        if self._stamp == turn:
            return start
        ahead = 0
        for item in self._queue:
            if isinstance(item, _TurnStart) and item.turn == turn:
                return start + ahead * FRAME_S
            if isinstance(item, bytes):
                ahead += 1
        return None

    def turn_pending(self, turn: int) -> bool:
        """Whether turn `turn`'s start mark is still to be sent or echoed."""
        queued = any(isinstance(i, _Mark) and i.turn == turn for i in self._queue)
        return queued or turn in self._turn_marks.values()

    def heard_on_stream(self, turn: int) -> float | None:
        """Where on the callee's stream (ms of its audio) turn `turn` began to play, from
        its mark's echo; None until then, or if it was cleared unplayed."""
        return self._heard_ms.get(turn)

    # ---- the writer -----------------------------------------------------------------------

    async def run(self) -> None:
        """Send what the inline path left for later (paced frames, after a re-attach);
        runs until cancelled."""
        while True:
            await self._sleep(await self._flush())

    async def _kick(self) -> None:
        """Send what is due now from the caller's task (no task hop on the hot path); if the
        writer is mid-send it sees the new work itself, and a remainder not yet due is left
        to `run()`."""
        if self._sending:
            return
        if await self._flush() is not None:
            self._wake.set()
        self._changed()

    async def _flush(self) -> float | None:
        """Send everything due; return seconds until the next frame is due, None if idle."""
        if self._sending:
            return None
        self._sending = True
        try:
            while (leg := self._leg) is not None:
                if self._clear_pending:
                    self._clear_pending = False
                    self._play_end = 0.0
                    self.stats.clears += 1
                    await leg.send(twilio_codec.clear(leg.stream_sid))
                    metrics.CLEAR_LATENCY.observe(self._clock() - self._barged_at)
                    continue
                if not self._queue:
                    break
                item = self._queue[0]
                if isinstance(item, _TurnStart):
                    self._queue.popleft()
                    self._stamp = item.turn
                    continue
                if isinstance(item, _Mark):
                    self._queue.popleft()
                    self._unheard.append(item.name)
                    if item.turn:
                        self._turn_marks[item.name] = item.turn
                    self.stats.marks_sent += 1
                    await leg.send(twilio_codec.mark(leg.stream_sid, item.name))
                    continue
                now = self._clock()
                ahead = self._play_end - now
                if ahead > self._lead_s:
                    return ahead - self._lead_s
                self._queue.popleft()
                start = max(self._play_end, now)
                if self._stamp:
                    self._heard[self._stamp] = start
                    self._heard.pop(self._stamp - self.KEEP_TURNS, None)
                    self._stamp = 0
                elif self._play_end:  # mid-turn: due before the callee's buffer ran dry
                    self._late(-ahead)
                self._play_end = start + FRAME_S
                self.stats.frames_sent += 1
                await leg.send(twilio_codec.media(leg.stream_sid, item))
            return None
        finally:
            self._sending = False
            if self.drained:
                self._drained.set()

    async def _sleep(self, delay_s: float | None) -> None:
        """Wait for new work, or `delay_s`; a barge-in or new audio wakes it early."""
        if self._wake.is_set():
            self._wake.clear()
            return
        timer = None
        if delay_s is not None:
            timer = asyncio.get_running_loop().call_later(delay_s, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            self._wake.clear()
            if timer is not None:
                timer.cancel()

    def _enqueue(self, frames: list[bytes]) -> None:
        """Queue frames; the first after a turn boundary opens (and numbers) a new turn."""
        if not frames:
            return
        if not self._in_turn:
            self._in_turn = True
            self.turns += 1
            self._queue.append(_TurnStart(self.turns))
            if self._stream_ms is not None:
                self._queue.append(_Mark(f"turn-{self.turns}", self.turns))
        self._queue.extend(frames)

    def _late(self, late: float) -> None:
        """Keep the window's worst lateness (how long after the callee's buffer ran dry a
        frame left: a gap they heard); one observation per window keeps the per-frame cost to
        a comparison."""
        if late > self._late_max:
            self._late_max = late
        if self.stats.frames_sent % LATENESS_WINDOW == 0:
            metrics.FRAME_LATENESS.observe(self._late_max)
            self._late_max = 0.0

    def _changed(self) -> None:
        if self.drained:
            self._drained.set()

    def _forget_unheard(self) -> None:
        self.stats.marks_cleared += len(self._unheard)
        self._unheard.clear()
        self._cleared.clear()
        self._turn_marks.clear()
