"""The caller's audio on its way to Gemini: resampled, and held back until the model is up.

Twilio delivers 8 kHz μ-law every 20 ms from the moment the stream starts, while the Gemini
Live session may still be connecting; the model wants 16 kHz PCM and the newest audio rather
than a growing backlog.
"""

from __future__ import annotations

import collections

from media.codec import audio
from media.providers.gemini_live import GeminiLiveSession


class InboundAudio:
    """Caller audio for Gemini: PCM16 8 kHz -> 16 kHz, sent from the Twilio reader's task.

    Sending inline saves a task switch per 20 ms frame, the largest scheduling cost of a call.
    Until the model session is up (`start()`), only the newest `max_frames` are kept, and
    that backlog goes out as one chunk with the first live frame.
    """

    def __init__(self, max_frames: int = 50) -> None:
        self._up = audio.Upsampler8to16()
        self._backlog: collections.deque[bytes] = collections.deque()
        self._max = max_frames
        self._live: GeminiLiveSession | None = None
        self.dropped_frames = 0

    def start(self, live: GeminiLiveSession) -> None:
        self._live = live

    async def push(self, pcm8k: bytes) -> None:
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
