"""An in-memory `telephony.port.Telephony` for tests of the code that places calls.

It keeps what was asked of it as plain state (dials, hang-ups, DTMF) so tests assert on
outcomes, and it can be scripted to refuse the next dial the way a carrier would.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets

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
        record = telephony.Recording(sid, call_sid, "completed", duration_sec)
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

    async def fetch_recording(self, recording_sid: str) -> bytes:
        self._check_open()
        try:
            return self.recording_media[recording_sid]
        except KeyError:
            raise telephony.TelephonyError(
                "recording not found", retryable=False, status=404
            ) from None

    async def aclose(self) -> None:
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("FakeTelephony is closed")


def _conforms(fake: FakeTelephony) -> telephony.Telephony:
    return fake  # mypy checks the fake against the port here
