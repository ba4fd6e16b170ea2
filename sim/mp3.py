"""Real MP3 for the simulated carrier's recordings, as Twilio serves them at `.mp3`.

The carrier captures 8 kHz mono μ-law; `Recorder` decodes it to PCM16 and this module
encodes that with LAME (the `lameenc` package). LAME resamples to 32 kHz so the file is
MPEG-1 Layer III (every frame starts `0xFF 0xFB`, 1152 samples), which every player and
Deepgram's batch API read; 32 kbit/s mono is plenty for telephone audio.
"""

from __future__ import annotations

import lameenc

IN_RATE = 8000
OUT_RATE = 32000
BIT_RATE_KBPS = 32


def encode_mp3(pcm16: bytes, sample_rate: int = IN_RATE) -> bytes:
    """MP3 of mono little-endian PCM16 at `sample_rate` (an empty input gives a short
    silent file, never zero bytes)."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(BIT_RATE_KBPS)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_out_sample_rate(OUT_RATE)
    encoder.set_channels(1)
    encoder.set_quality(7)  # fast; the quality of a phone line needs no more
    return bytes(encoder.encode(pcm16)) + bytes(encoder.flush())
