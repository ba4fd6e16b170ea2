"""The callee's audio on its way to Gemini and to the supervisor's ear, held back until each
is up.

Twilio delivers 8 kHz μ-law every 20 ms from the moment the stream starts, while the Gemini
Live session may still be connecting; the model wants 16 kHz PCM and the newest audio rather
than a growing backlog. The ear (`EarFeed`, `EarBacklog`) wants every word from the first
frame on.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Protocol

from media.codec import audio
from media.providers.gemini_live import GeminiLiveSession


class InboundAudio:
    """Caller audio for Gemini: PCM16 8 kHz -> 16 kHz, sent from the Twilio reader's task.

    Sending inline saves a task switch per 20 ms frame, the largest scheduling cost of a call.
    Until the model session is up (`start()`), only the newest `max_frames` are kept, and
    that backlog goes out as one chunk with the first live frame. `received_ms` counts the
    audio received: the carrier's clock, which our own stalls cannot skew.
    """

    def __init__(self, max_frames: int = 50) -> None:
        self._up = audio.Upsampler8to16()
        self._backlog: collections.deque[bytes] = collections.deque()
        self._max = max_frames
        self._live: GeminiLiveSession | None = None
        self.dropped_frames = 0
        self.received_ms = 0.0

    def start(self, live: GeminiLiveSession) -> None:
        self._live = live

    async def push(self, pcm8k: bytes) -> None:
        self.received_ms += len(pcm8k) / 16  # PCM16 at 8 kHz: 16 bytes a millisecond
        chunk = self._up.process(pcm8k)
        if self._live is None:
            self._backlog.append(chunk)
            if len(self._backlog) > self._max:
                self._backlog.popleft()
                self.dropped_frames += 1
            return
        if self._backlog:
            self._backlog.append(chunk)
            chunk = b"".join(self._backlog)
            self._backlog.clear()
        await self._live.send_audio(chunk)


class EarBacklog:
    """The callee's μ-law for the supervisor's ear, kept until the ear exists.

    The ear is built only once core answered and the model session is up; the callee may
    already be talking by then (a greeting, an IVR menu, a voicemail prompt). Frames are kept
    (the newest `max_bytes`, 30 s by default) and handed over in chunks of `chunk_bytes`, so
    the ear hears the call from its first frame and its clock starts with the stream's.
    """

    def __init__(self, max_bytes: int = 30 * 8000, chunk_bytes: int = 8000) -> None:
        self._frames: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._max = max_bytes
        self._chunk = chunk_bytes
        self.dropped_bytes = 0

    @property
    def dropped_ms(self) -> int:
        """How much of the start was dropped (8 μ-law bytes a millisecond)."""
        return self.dropped_bytes // 8

    def push(self, mulaw: bytes) -> None:
        self._frames.append(mulaw)
        self._bytes += len(mulaw)
        while self._bytes > self._max:
            dropped = self._frames.popleft()
            self._bytes -= len(dropped)
            self.dropped_bytes += len(dropped)

    def drain(self) -> list[bytes]:
        """Everything kept, oldest first, joined into chunks of about `chunk_bytes`."""
        chunks: list[bytes] = []
        pending: list[bytes] = []
        size = 0
        for frame in self._frames:
            pending.append(frame)
            size += len(frame)
            if size >= self._chunk:
                chunks.append(b"".join(pending))
                pending, size = [], 0
        if pending:
            chunks.append(b"".join(pending))
        self._frames.clear()
        self._bytes = 0
        return chunks


class _Ear(Protocol):
    def push(self, mulaw: bytes) -> None: ...


class EarFeed:
    """The callee's μ-law on its way to the ear: kept in an `EarBacklog` until `start(ear)`,
    then pushed as it comes. `on_sent` sees every byte the ear is handed (Deepgram bills the
    audio streamed to it); `shift_ms` is the start of the call the backlog had to drop.
    """

    def __init__(self, on_sent: Callable[[bytes], None], backlog: EarBacklog | None = None) -> None:
        self._backlog: EarBacklog | None = backlog or EarBacklog()
        self._ear: _Ear | None = None
        self._on_sent = on_sent
        self.shift_ms = 0

    def push(self, mulaw: bytes) -> None:
        if self._ear is not None:
            self._ear.push(mulaw)
            self._on_sent(mulaw)
        elif self._backlog is not None:
            self._backlog.push(mulaw)

    def start(self, ear: _Ear | None) -> None:
        """Hand the backlog to `ear` and feed it from now on; None: there is no ear."""
        backlog, self._backlog = self._backlog, None
        if ear is None or backlog is None:
            return
        self._ear, self.shift_ms = ear, backlog.dropped_ms
        for chunk in backlog.drain():  # what the callee said while the model connected
            self.push(chunk)
