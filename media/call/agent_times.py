"""When the callee began to hear each agent line, on the carrier's clock where possible.

A line belongs to the first playout turn not yet reported (its transcript trails its audio).
The playout knows when it sent that turn's first frame, but that is our clock; the echo of the
turn's start mark says where on the callee's stream the carrier really played it, immune to
our stalls and to the phone's jitter buffer. The echo can trail the line (a short reply whose
`turnComplete` comes before its first frame has played), so a line waits for it, up to
`wait_s`, and is then timed by our estimate. Lines leave in the order they came.

Pure bookkeeping over the `Playout`: the bridge feeds it and sends what it returns.
"""

from __future__ import annotations

import collections
import dataclasses

from media.call.lines import Line
from media.call.playout import Playout

Timed = tuple[str, int]  # (text, offset ms)


@dataclasses.dataclass(slots=True)
class _Waiting:
    text: str
    turn: int
    estimate_ms: int
    since: float


class AgentTimes:
    def __init__(self, playout: Playout, t0: float, wait_s: float = 1.5) -> None:
        self._playout = playout
        self._t0 = t0
        self._wait_s = wait_s
        self._reported = 0  # playout turns already given to a line
        self._waiting: collections.deque[_Waiting] = collections.deque()

    def add(self, line: Line, now: float) -> list[Timed]:
        """Take `line`; return the lines now ready (it, if its start is known)."""
        turn = max(line.turn, self._reported + 1)
        heard = self._playout.heard_at(turn)
        if heard is None:  # no audio of its own: timed by its transcript's arrival
            turn, estimate = 0, line.at_ms
        else:
            self._reported = turn
            estimate = round((heard - self._t0) * 1000)
        self._waiting.append(_Waiting(line.text, turn, estimate, now))
        return self.ready(now)

    def ready(self, now: float, *, flush: bool = False) -> list[Timed]:
        """Lines whose start is known, or that waited long enough (all of them on `flush`)."""
        out: list[Timed] = []
        while self._waiting:
            head = self._waiting[0]
            echoed = self._playout.heard_on_stream(head.turn) if head.turn else None
            pending = head.turn and echoed is None and self._playout.turn_pending(head.turn)
            if pending and not flush and now - head.since < self._wait_s:
                break
            self._waiting.popleft()
            out.append((head.text, head.estimate_ms if echoed is None else round(echoed)))
        return out
