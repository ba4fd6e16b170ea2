"""The simulated carrier's recordings are real MP3: frame headers, sizes and duration."""

from __future__ import annotations

import numpy as np
import pytest

from sim import codec
from sim.media_stream import Recorder
from sim.mp3 import encode_mp3
from tests import mp3_frames


def tone(seconds: float) -> bytes:
    samples = np.arange(round(seconds * 8000))
    return (np.sin(samples * 2 * np.pi * 440 / 8000) * 8000).astype("<i2").tobytes()


@pytest.mark.parametrize("seconds", [0.5, 3.0, 61.3])
def test_pcm_becomes_mpeg1_layer3_of_the_same_length(seconds: float) -> None:
    mp3 = encode_mp3(tone(seconds))
    assert mp3[:2] == b"\xff\xfb"  # MPEG-1 Layer III, no CRC: what players expect of `.mp3`
    frames = mp3_frames.frames(mp3)  # every byte belongs to a frame
    assert {(f.sample_rate, f.bit_rate_kbps, f.channels) for f in frames} == {(32000, 32, 1)}
    # LAME pads the end with less than two frames (72 ms) of silence.
    assert 0 <= mp3_frames.duration_s(mp3) - seconds < 0.1


def test_silence_still_makes_a_playable_file() -> None:
    mp3 = encode_mp3(b"")
    assert mp3[:2] == b"\xff\xfb" and mp3_frames.duration_s(mp3) < 0.1


def test_the_recorders_tracks_encode_to_their_length() -> None:
    recorder = Recorder()
    recorder.add(codec.ulaw_encode(tone(2.0)), bytes([0xFF]) * 16000)  # a tone; silence
    said = np.frombuffer(recorder.pcm("inbound"), "<i2")
    assert len(said) == 16000 and np.abs(said).max() > 6000
    assert not np.frombuffer(recorder.pcm("outbound"), "<i2").any()
    for track in ("inbound", "outbound", "both"):
        assert 0 <= mp3_frames.duration_s(encode_mp3(recorder.pcm(track))) - 2.0 < 0.1


def test_the_frame_reader_refuses_what_is_not_mp3() -> None:
    wav = b"RIFF" + bytes(100)
    with pytest.raises(ValueError, match="sync"):
        mp3_frames.frames(wav)
    truncated = encode_mp3(tone(0.5))[:-10]
    with pytest.raises(ValueError, match="past the end"):
        mp3_frames.frames(truncated)
