"""Speech-shaped synthetic audio for the simulated world, with the timing of every word.

Nothing in the world can recognise speech, but the bridge must still do real work on real
audio: resample it, detect who is talking, time barge-ins, record it. So each line is
rendered as voiced sound with the rhythm of speech: one burst per syllable (a harmonic
series on a gently moving pitch, shaped by a vowel-like pair of formants), short gaps between
words and longer ones at punctuation, never long enough to end a turn. The returned word
timings are what the simulated Deepgram reports, so transcripts line up with the audio.

Venue audio goes to the carrier as μ-law with a little per-call background noise mixed in.
The noise is what makes every 20 ms of a call's audio unique, which is how the simulated
Gemini and Deepgram tell calls apart (`sim.world.FrameIndex`); it is also how a real line
sounds. μ-law code 0x7F ("negative zero") is never emitted, so decoding and re-encoding a
frame gives back the same bytes.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import warnings
from typing import Final

import numpy as np
import numpy.typing as npt

from sim.codec import ulaw_encode

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

WordTiming = tuple[str, float, float]  # token, start_s, end_s from the start of the line

GAP_S: Final = 0.07  # between words
COMMA_GAP_S: Final = 0.16
SENTENCE_GAP_S: Final = 0.24  # stays under every end-of-turn silence in the world (≥ 0.4 s)
_VOWELS: Final = ((730, 1090), (270, 2290), (530, 1840), (570, 840), (440, 1020), (300, 870))
_TABLE: Final = 2048
_NOISE_CODES: Final = np.array(
    [c for c in (*range(0x70, 0x7F), *range(0xF0, 0x100))], dtype=np.uint8
)


@dataclasses.dataclass(frozen=True, slots=True)
class Voice:
    """How a speaker sounds: pitch, pace (ms per average 5-letter word) and loudness."""

    pitch_hz: float
    word_ms: float = 300.0
    level: float = 0.3


@dataclasses.dataclass(frozen=True, slots=True)
class Speech:
    """PCM16 mono little-endian audio at `rate` Hz, and when each token of the text is spoken."""

    pcm: bytes
    rate: int
    words: tuple[WordTiming, ...]

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.rate


def speak(text: str, voice: Voice, rate: int, rng: np.random.Generator) -> Speech:
    """Render `text` (split on whitespace, like the transcripts) as speech-shaped audio."""
    pieces: list[npt.NDArray[np.float64]] = []
    words: list[WordTiming] = []
    t = 0.0
    tokens = text.split()
    for i, token in enumerate(tokens):
        letters = len(re.sub(r"\W", "", token)) or 1
        duration = min(0.9, max(0.12, letters * voice.word_ms / 5000))
        sound = _word(duration, voice, rate, rng, declination=1.0 - 0.1 * i / max(1, len(tokens)))
        pieces.append(sound)
        words.append((token, round(t, 3), round(t + duration, 3)))
        t += duration
        if i < len(tokens) - 1:
            gap = (
                SENTENCE_GAP_S
                if token[-1] in ".!?"
                else COMMA_GAP_S
                if token[-1] in ",;:—"
                else GAP_S
            )
            pieces.append(np.zeros(round(gap * rate)))
            t += round(gap * rate) / rate
    signal = np.concatenate(pieces) if pieces else np.zeros(0)
    pcm = np.clip(np.rint(signal * 32767 * voice.level), -32768, 32767).astype("<i2")
    return Speech(pcm.tobytes(), rate, tuple(words))


def _word(
    duration: float, voice: Voice, rate: int, rng: np.random.Generator, declination: float
) -> npt.NDArray[np.float64]:
    syllables = max(1, round(duration / 0.16))
    edges = np.linspace(0, round(duration * rate), syllables + 1).astype(int)
    out = np.zeros(edges[-1])
    top = min(rate * 0.45, 3400.0 if rate <= 8000 else 5000.0)
    for a, b in itertools.pairwise(edges):
        n = b - a
        t = np.arange(n) / rate
        f0 = (
            voice.pitch_hz
            * declination
            * (1 + 0.04 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)))
        )
        phase = 2 * np.pi * np.cumsum(f0) / rate
        f1, f2 = _VOWELS[int(rng.integers(len(_VOWELS)))]
        # One period of the harmonic series as a wavetable, read at the moving pitch.
        grid = np.arange(_TABLE) * (2 * np.pi / _TABLE)
        table = np.zeros(_TABLE)
        for k in range(1, int(top // voice.pitch_hz) + 1):
            hz = k * voice.pitch_hz
            gain = np.exp(-(((hz - f1) / 160) ** 2)) + 0.6 * np.exp(-(((hz - f2) / 220) ** 2))
            table += (gain + 0.15 / k) * np.sin(k * grid + rng.uniform(0, 2 * np.pi))
        index = (phase * (_TABLE / (2 * np.pi))).astype(np.int64) % _TABLE
        syllable = table[index]
        syllable *= np.sin(np.pi * np.arange(n) / n) ** 0.6  # attack and decay
        peak = float(np.max(np.abs(syllable))) or 1.0
        out[a:b] = syllable / peak
    return out


def beep(rate: int, *, hz: float = 1000.0, seconds: float = 0.4, level: float = 0.3) -> bytes:
    """The answering machine's tone (PCM16 at `rate`)."""
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 32767 * level).astype("<i2").tobytes()


def silence(rate: int, seconds: float) -> bytes:
    return bytes(2 * round(seconds * rate))


def line_mulaw(pcm8k: bytes, rng: np.random.Generator, noise_rms: float = 24.0) -> bytes:
    """Callee speech (PCM16 8 kHz) as μ-law with this call's background noise mixed in."""
    samples = np.frombuffer(pcm8k, dtype="<i2").astype(np.float64)
    samples += rng.normal(0.0, noise_rms, samples.shape)
    mixed = np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()
    return ulaw_encode(mixed).replace(b"\x7f", b"\xff")


def noise_mulaw(rng: np.random.Generator, n: int) -> bytes:
    """`n` bytes of a quiet line (about -50 dBFS): μ-law codes near zero, never 0x7F."""
    return rng.choice(_NOISE_CODES, n).tobytes()


def rms(pcm16: bytes) -> int:
    """Root-mean-square level of PCM16 audio (0 for empty input)."""
    return int(audioop.rms(pcm16, 2)) if pcm16 else 0
