"""Low-latency audio conversion between the Twilio leg and the Gemini Live leg.

Twilio speaks G.711 μ-law at 8 kHz in 20 ms frames; Gemini takes PCM16 at 16 kHz and answers
with PCM16 at 24 kHz in chunks of varying size. Every millisecond held back here is added to
the conversation's turn latency, so each converter is a stateful FIR that emits output for
every input chunk (no block buffering) and carries its filter history across chunks: cutting a
stream into chunks of any size gives the same samples as converting it whole.

G.711 uses `audioop` (C, ~0.1-0.7 µs per frame; `audioop-lts` provides it on Python 3.13+).
`audioop.ratecv` is NOT used for resampling: it interpolates linearly with no anti-alias
filter, so 24 kHz -> 8 kHz folds the model's 4-12 kHz sibilance into the phone band at full
level. The filters are Kaiser-windowed sincs designed once at import.

Measured on the shared 2-core dev box (Python 3.11, numpy 2.4, medians; µs per 20 ms of audio,
24 kHz input in Gemini's 100 ms chunks). "alias" = a 5.3 kHz tone at 24 kHz, level of what
folds to 2.7 kHz at 8 kHz; "image" = the 4.6 kHz image of a 3.4 kHz tone after 8 -> 16 kHz;
"delay" = group delay + mean buffering at 20 ms chunks. `tests/unit/test_audio.py` asserts
the quality figures, `tests/bench/bench_codec.py` re-measures the speed.

    option              24k->8k alias  delay     µs  | 8k->16k image  delay     µs
    this module (FIR)       -62 dB    1.29 ms   6-9  |   -61 dB    1.44 ms  9-11
    soxr QQ                   0 dB    0 ms        2  |   -10 dB    0.25 ms     6
    soxr HQ                -120 dB    43 ms       3  |   -70 dB    63 ms       7
    audioop.ratecv            0 dB    0 ms        6  |    -8 dB    0 ms        3

Passband: FIR -0.2 dB at 3.4 kHz down, ±0.01 dB to 3.4 kHz up (soxr QQ -3.5 dB and ratecv
-4.2 dB at 3.4 kHz up). Every rejected option either aliases or buffers tens of ms.

The half-band upsampler passes every input sample through unchanged (odd outputs) and
interpolates only the even ones, which halves its work and keeps each polyphase branch at
exactly unity DC gain (no 8 kHz whistle on a constant input).
"""

from __future__ import annotations

import warnings
from typing import Final

import numpy as np
import numpy.typing as npt

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FloatArray = npt.NDArray[np.float64]

MULAW_SILENCE: Final = 0xFF
FRAME_BYTES: Final = 160  # 20 ms of μ-law at 8 kHz, one Twilio media message
_F64: Final = np.dtype(np.float64).itemsize
_LO: Final = np.array(-32768.0)
_HI: Final = np.array(32767.0)


def ulaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 μ-law bytes to PCM16 little-endian, one sample per byte."""
    return audioop.ulaw2lin(data, 2)


def pcm16_to_ulaw(data: bytes) -> bytes:
    """Encode PCM16 little-endian (even length) to G.711 μ-law, bit-exact with `audioop`."""
    return audioop.lin2ulaw(data, 2)


def windowed_sinc(num_taps: int, cutoff_hz: float, rate_hz: float, beta: float) -> FloatArray:
    """A linear-phase low-pass FIR (Kaiser-windowed sinc) with unity DC gain."""
    m = np.arange(num_taps) - (num_taps - 1) / 2
    h: FloatArray = 2 * cutoff_hz / rate_hz * np.sinc(2 * cutoff_hz / rate_hz * m)
    h *= np.kaiser(num_taps, beta)
    h /= h.sum()
    return h


def _round_clip(y: FloatArray) -> None:
    # 0-d array bounds: ufuncs with them cost ~0.6 µs each, np.clip ~3 µs at these sizes.
    np.rint(y, out=y)
    np.maximum(y, _LO, out=y)
    np.minimum(y, _HI, out=y)


def _to_int16_bytes(y: FloatArray) -> bytes:
    _round_clip(y)
    return y.astype("<i2").tobytes()


class _Pcm16Input:
    """Bytes -> int16 samples, holding back an odd trailing byte until its pair arrives."""

    __slots__ = ("_carry",)

    def __init__(self) -> None:
        self._carry = b""

    def samples(self, chunk: bytes) -> npt.NDArray[np.int16]:
        if self._carry or len(chunk) & 1:
            chunk = self._carry + chunk
            cut = len(chunk) & ~1
            chunk, self._carry = chunk[:cut], chunk[cut:]
        return np.frombuffer(chunk, dtype="<i2")


class Downsampler24to8:
    """Gemini's 24 kHz PCM16 -> 8 kHz PCM16 for the phone, anti-aliased, chunk-size agnostic.

    A 63-tap low-pass (3.9 kHz) evaluated only at every third input sample. The product is
    computed in polyphase form as one BLAS matrix product, `taps(21 x 3) @ blocks(3 x m)`,
    followed by a sum of shifted rows; this is ~2x cheaper than filtering at the full rate and
    decimating. State is the unconsumed tail of the input (62-64 samples), so the only delay
    is the filter's group delay (31 input samples = 1.29 ms) plus at most 2 samples of phase.
    """

    TAPS: Final = 63
    GROUP_DELAY_MS: Final = (TAPS - 1) / 2 / 24.0

    _BLOCKS: Final = TAPS // 3
    # _PHASE_TAPS[k, p] = reversed tap 3k + p
    _PHASE_TAPS: Final = np.ascontiguousarray(
        windowed_sinc(TAPS, 3900.0, 24000.0, 5.0)[::-1].reshape(TAPS // 3, 3)
    )

    def __init__(self) -> None:
        self._input = _Pcm16Input()
        self._history: FloatArray = np.zeros(self.TAPS - 1)

    def process(self, chunk: bytes) -> bytes:
        """Convert the next chunk of 24 kHz PCM16; returns the 8 kHz PCM16 now available."""
        buf = np.concatenate((self._history, self._input.samples(chunk)), dtype=np.float64)
        n_out = (buf.shape[0] - self.TAPS) // 3 + 1
        if n_out <= 0:
            self._history = buf
            return b""
        rows = n_out + self._BLOCKS - 1
        # z[k, i] = block i of 3 samples · phase taps k; y[n] = sum_k z[k, n + k] is a sum of
        # shifted rows, read through a strided view so the reduction runs over contiguous rows.
        z = self._PHASE_TAPS @ buf[: 3 * rows].reshape(rows, 3).T
        shifted = np.ndarray(
            (self._BLOCKS, n_out), dtype=np.float64, buffer=z, strides=((rows + 1) * _F64, _F64)
        )
        self._history = buf[3 * n_out :]
        return _to_int16_bytes(shifted.sum(axis=0))

    def reset(self) -> None:
        """Forget the history (e.g. after a barge-in) so stale audio cannot leak out."""
        self._input = _Pcm16Input()
        self._history = np.zeros(self.TAPS - 1)


def half_band_interpolator(num_taps: int) -> FloatArray:
    """The even-phase taps (reversed, for `np.correlate`) of a ×2 half-band interpolator."""
    h = windowed_sinc(num_taps, 4000.0, 16000.0, 5.0)
    even = h[0::2]
    # Unity DC gain in this branch too, matching the exact pass-through branch.
    return np.ascontiguousarray((even / even.sum())[::-1])


class Upsampler8to16:
    """Caller audio 8 kHz PCM16 -> 16 kHz PCM16 for Gemini, image-free, chunk-size agnostic.

    Zero-stuffing plus a 47-tap half-band low-pass, in polyphase form: every odd output is an
    input sample passed through (the half-band centre tap), every even output is a 24-tap
    interpolation. History is the last 23 input samples; delay is the group delay, 23 output
    samples = 1.44 ms, and each input chunk yields exactly twice its samples.
    """

    TAPS: Final = 47
    GROUP_DELAY_MS: Final = (TAPS - 1) / 2 / 16.0

    _WINDOW: Final = (TAPS + 1) // 2
    # The centre tap (23) lands on input x[i - 11], i.e. 12 samples into the 24-sample window.
    _PASS_OFFSET: Final = (TAPS - 1) // 4 + 1
    _INTERPOLATOR: Final = half_band_interpolator(TAPS)

    def __init__(self) -> None:
        self._input = _Pcm16Input()
        self._history: FloatArray = np.zeros(self._WINDOW - 1)

    def process(self, chunk: bytes) -> bytes:
        """Convert the next chunk of 8 kHz PCM16; returns twice as many 16 kHz samples."""
        buf = np.concatenate((self._history, self._input.samples(chunk)), dtype=np.float64)
        n = buf.shape[0] - self._WINDOW + 1
        if n <= 0:
            self._history = buf
            return b""
        interpolated = np.correlate(buf, self._INTERPOLATOR)
        _round_clip(interpolated)
        out = np.empty((n, 2), dtype="<i2")
        out[:, 0] = interpolated
        out[:, 1] = buf[self._PASS_OFFSET : self._PASS_OFFSET + n]
        self._history = buf[n:]
        return out.tobytes()

    def reset(self) -> None:
        """Forget the history so a new stream starts from silence."""
        self._input = _Pcm16Input()
        self._history = np.zeros(self._WINDOW - 1)


class OutboundFramer:
    """Cuts a μ-law byte stream into whole 20 ms (160-byte) frames for Twilio.

    Twilio is reported to drop partial outbound frames, and the model's chunks rarely land
    on frame boundaries, so the remainder waits here for the next chunk. `clear()` is the
    barge-in path: buffered, unsent audio is dropped at once.
    """

    __slots__ = ("_buf", "frame_bytes")

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        self.frame_bytes = frame_bytes
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, always fewer than one frame after `push()`."""
        return len(self._buf)

    def push(self, data: bytes) -> list[bytes]:
        """Add μ-law bytes; returns every whole frame now available, in order."""
        buf = self._buf
        buf += data
        size = self.frame_bytes
        whole = len(buf) - len(buf) % size
        if not whole:
            return []
        frames = [bytes(buf[i : i + size]) for i in range(0, whole, size)]
        del buf[:whole]
        return frames

    def flush(self, pad: bool = True) -> list[bytes]:
        """Emit the partial last frame (0xFF-padded to full size if `pad`), leaving none."""
        if not self._buf:
            return []
        tail = bytes(self._buf)
        self._buf.clear()
        if pad:
            tail += bytes([MULAW_SILENCE]) * (self.frame_bytes - len(tail))
        return [tail]

    def clear(self) -> int:
        """Drop everything buffered (barge-in); returns how many bytes were dropped."""
        dropped = len(self._buf)
        self._buf.clear()
        return dropped
