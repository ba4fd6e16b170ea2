"""The reports a call's media sent core and core has not yet acknowledged, by seq.

Every report gets the next sequence number when it is queued; core acknowledges
up to a seq once it has applied (or refused) everything before it. When the session breaks
(a core restart), whatever is still here is sent again on the re-attached session, and core
applies each (call_id, seq) at most once, so nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import collections

from callagent.v1 import media_pb2


class ReplayLog:
    """Unacknowledged reports in seq order, bounded (a full log refuses new reports)."""

    def __init__(self, limit: int, first_seq: int = 1) -> None:
        self._limit = limit
        self._items: collections.deque[media_pb2.SessionRequest] = collections.deque()
        self._next = first_seq

    def add(self, request: media_pb2.SessionRequest) -> bool:
        """Number the report and keep it until acknowledged; False when the log is full."""
        if len(self._items) >= self._limit:
            return False
        request.seq = self._next
        self._next += 1
        self._items.append(request)
        return True

    def ack(self, seq: int) -> None:
        """Core holds everything up to `seq`: forget it."""
        while self._items and self._items[0].seq <= seq:
            self._items.popleft()

    def after(self, seq: int) -> list[media_pb2.SessionRequest]:
        """The kept reports numbered above `seq`, in order (0: all of them, for a replay)."""
        return [r for r in self._items if r.seq > seq]

    def __len__(self) -> int:
        return len(self._items)
