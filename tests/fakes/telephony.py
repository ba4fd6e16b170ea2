"""An in-memory `telephony.port.Telephony` for tests of the code that places calls.

It keeps what was asked of it as plain state (dials, hang-ups, DTMF) so tests assert on
outcomes, and it can be scripted to refuse the next dial the way a carrier would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import secrets
from collections.abc import AsyncIterator

from telephony import port as telephony


@dataclasses.dataclass(frozen=True, slots=True)
class Dial:
    """One accepted dial: our call id, the number and the sid we handed back."""

    call_id: str
    to: str
    call_sid: str


class FakeTelephony:
    """Implements `telephony.Telephony` in memory; sids are `CA` + 32 hex digits."""

    def __init__(self) -> None:
        self.dials: list[Dial] = []
        self.dial_attempts = 0
        self.hangups: list[str] = []
        self.dtmf: list[tuple[str, str, str]] = []
        self.recordings: dict[str, list[telephony.Recording]] = {}
        self.recording_media: dict[str, bytes] = {}
        # Recordings are served in pieces of this size; while `recording_gate` is set and
        # not yet released, only the first piece is served (to show a reader that streams).
        self.recording_chunk = 64 * 1024
        self.recording_gate: asyncio.Event | None = None
        self.recordings_open = 0
        self.ended: set[str] = set()
        self.closed = False
        self._next_dial_error: telephony.TelephonyError | None = None
        self._counter = itertools.count(1)

    def fail_next_dial(
        self, *, retryable: bool, message: str = "scripted dial failure", code: int | None = None
    ) -> None:
        """Make the next `dial()` raise `TelephonyError` (once)."""
        self._next_dial_error = telephony.TelephonyError(message, retryable=retryable, code=code)

    def add_recording(self, call_sid: str, media: bytes, duration_sec: int = 1) -> str:
        """Store a completed recording for `call_sid`; return its sid."""
        sid = f"RE{next(self._counter):032x}"
        url = f"https://carrier.invalid/Recordings/{sid}"
        record = telephony.Recording(sid, call_sid, "completed", duration_sec, url)
        self.recordings.setdefault(call_sid, []).append(record)
        self.recording_media[sid] = media
        return sid

    async def dial(self, call_id: str, to: str) -> str:
        self._check_open()
        self.dial_attempts += 1
        if self._next_dial_error is not None:
            error, self._next_dial_error = self._next_dial_error, None
            raise error
        sid = f"CA{secrets.token_hex(16)}"  # unique across fakes, like real sids
        self.dials.append(Dial(call_id, to, sid))
        return sid

    async def hang_up(self, call_sid: str) -> None:
        self._check_open()
        self.hangups.append(call_sid)
        self.ended.add(call_sid)

    async def send_dtmf(self, call_sid: str, call_id: str, digits: str) -> None:
        self._check_open()
        telephony.check_dtmf_digits(digits)
        if call_sid in self.ended:
            raise telephony.TelephonyError("call is not in progress", retryable=False, code=21220)
        self.dtmf.append((call_sid, call_id, digits))

    async def list_recordings(self, call_sid: str) -> list[telephony.Recording]:
        self._check_open()
        return list(self.recordings.get(call_sid, []))

    @contextlib.asynccontextmanager
    async def open_recording(self, recording_sid: str) -> AsyncIterator[telephony.RecordingMedia]:
        self._check_open()
        media = self.recording_media.get(recording_sid)
        if media is None:
            raise telephony.TelephonyError("recording not found", retryable=False, status=404)
        self.recordings_open += 1
        try:
            yield telephony.RecordingMedia("audio/mpeg", len(media), self._pieces(media))
        finally:
            self.recordings_open -= 1

    async def _pieces(self, media: bytes) -> AsyncIterator[bytes]:
        for offset in range(0, len(media), self.recording_chunk):
            if offset and self.recording_gate is not None:
                await self.recording_gate.wait()
            yield media[offset : offset + self.recording_chunk]

    async def aclose(self) -> None:
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("FakeTelephony is closed")


def _conforms(fake: FakeTelephony) -> telephony.Telephony:
    return fake  # mypy checks the fake against the port here
