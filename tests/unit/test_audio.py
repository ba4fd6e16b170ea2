"""media.codec.audio: G.711 against the spec, resampler quality and chunk independence, framing."""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt
import pytest

from media.codec import audio

# --- G.711 μ-law -------------------------------------------------------------------------


def _ulaw_encode_reference(sample: int) -> int:
    """protocols.md D1, the 14-bit variant CPython's audioop implements."""
    v = sample >> 2
    if v < 0:
        v, mask = -v, 0x7F
    else:
        mask = 0xFF
    v = min(v, 8159) + 0x21
    seg = next(
        (
            s
            for s, top in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
            if v <= top
        ),
        8,
    )
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((v >> (seg + 1)) & 0x0F)) ^ mask


def _ulaw_decode_reference(byte: int) -> int:
    u = ~byte & 0xFF
    exp, mant = (u >> 4) & 7, u & 0x0F
    mag = (((mant << 3) + 0x84) << exp) - 0x84
    return -mag if u & 0x80 else mag


def test_ulaw_encode_matches_the_g711_spec_for_every_16_bit_sample() -> None:
    samples = np.arange(-32768, 32768, dtype="<i2")
    encoded = audio.pcm16_to_ulaw(samples.tobytes())
    expected = bytes(_ulaw_encode_reference(int(s)) for s in samples)
    assert encoded == expected


def test_ulaw_decode_matches_the_g711_spec_for_every_byte() -> None:
    decoded = np.frombuffer(audio.ulaw_to_pcm16(bytes(range(256))), dtype="<i2")
    assert [int(s) for s in decoded] == [_ulaw_decode_reference(b) for b in range(256)]


def test_ulaw_round_trip_is_exact_on_codewords_and_silence_is_ff() -> None:
    assert audio.ulaw_to_pcm16(bytes([audio.MULAW_SILENCE])) == b"\x00\x00"
    every_byte = bytes(range(256))
    again = audio.pcm16_to_ulaw(audio.ulaw_to_pcm16(every_byte))
    # 0x7F is μ-law's "negative zero"; it decodes to 0, which encodes as 0xFF.
    assert again == every_byte.replace(b"\x7f", b"\xff")


# --- resamplers --------------------------------------------------------------------------

Int16 = npt.NDArray[np.int16]
Resampler = type[audio.Downsampler24to8] | type[audio.Upsampler8to16]


def _tone(freq_hz: float, rate_hz: int, seconds: float = 1.0, amp: float = 10000.0) -> bytes:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return np.round(amp * np.sin(2 * np.pi * freq_hz * t)).astype("<i2").tobytes()


def _samples(pcm: bytes) -> Int16:
    return np.frombuffer(pcm, dtype="<i2")


def _level_db(pcm: bytes, rate_hz: int, freq_hz: float, amp: float = 10000.0) -> float:
    """Level of the `freq_hz` component relative to `amp`, skipping the first 100 ms."""
    y = _samples(pcm).astype(np.float64)[rate_hz // 10 :]
    t = np.arange(y.shape[0]) / rate_hz
    magnitude = abs(np.dot(y, np.exp(-2j * np.pi * freq_hz * t))) * 2 / y.shape[0]
    return float(20 * np.log10(max(magnitude, 1e-9) / amp))


def _rms_db(pcm: bytes, rate_hz: int, amp: float = 10000.0) -> float:
    y = _samples(pcm).astype(np.float64)[rate_hz // 10 :]
    return float(20 * np.log10(max(np.sqrt(np.mean(y**2)) * np.sqrt(2), 1e-9) / amp))


def _down(pcm: bytes, chunk: int = 4800) -> bytes:
    d = audio.Downsampler24to8()
    return b"".join(d.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk))


def _up(pcm: bytes, chunk: int = 320) -> bytes:
    u = audio.Upsampler8to16()
    return b"".join(u.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk))


@pytest.mark.parametrize("freq_hz", [4700.0, 5300.0, 6000.0, 8000.0, 11000.0])
def test_downsampler_rejects_what_would_alias_by_at_least_40_db(freq_hz: float) -> None:
    out = _down(_tone(freq_hz, 24000))
    assert _rms_db(out, 8000) <= -40.0


def test_downsampler_5_3_khz_tone_comes_out_at_least_40_db_down_at_its_alias() -> None:
    out = _down(_tone(5300.0, 24000))
    assert _level_db(out, 8000, 8000 - 5300) <= -40.0


@pytest.mark.parametrize(("freq_hz", "tolerance_db"), [(300.0, 0.1), (1000.0, 0.1), (3400.0, 0.5)])
def test_downsampler_keeps_the_phone_band(freq_hz: float, tolerance_db: float) -> None:
    assert abs(_level_db(_down(_tone(freq_hz, 24000)), 8000, freq_hz)) <= tolerance_db


@pytest.mark.parametrize("freq_hz", [300.0, 1000.0, 3000.0, 3400.0])
def test_upsampler_images_are_at_least_40_db_down_and_the_band_is_kept(freq_hz: float) -> None:
    out = _up(_tone(freq_hz, 8000))
    assert _level_db(out, 16000, 8000 - freq_hz) <= -40.0
    assert abs(_level_db(out, 16000, freq_hz)) <= 0.1


def test_upsampler_passes_input_samples_through_and_holds_dc_without_whistle() -> None:
    x = _samples(_tone(700.0, 8000, 0.2))
    y = _samples(_up(x.tobytes()))
    assert y.shape[0] == 2 * x.shape[0]
    delay = 11  # centre tap 23 at 16 kHz lands on input sample i - 11
    assert np.array_equal(y[1::2][delay:], x[:-delay])
    flat = _samples(_up(np.full(800, 12345, dtype="<i2").tobytes()))[200:]
    assert np.all(np.abs(flat.astype(np.int32) - 12345) <= 1)


@pytest.mark.parametrize(
    ("make", "rate_in", "rate_out"),
    [(audio.Downsampler24to8, 24000, 8000), (audio.Upsampler8to16, 8000, 16000)],
)
def test_added_latency_is_only_the_group_delay(
    make: Resampler, rate_in: int, rate_out: int
) -> None:
    converter = make()
    frame = rate_in // 50
    impulse = np.zeros(frame * 10, dtype="<i2")
    impulse[frame * 5] = 30000
    out: list[bytes] = []
    for i in range(10):
        chunk = converter.process(impulse[i * frame : (i + 1) * frame].tobytes())
        # no block buffering: every 20 ms in gives 20 ms out
        assert len(chunk) // 2 == rate_out // 50
        out.append(chunk)
    peak = int(np.argmax(np.abs(_samples(b"".join(out)))))
    measured_ms = (peak / rate_out - frame * 5 / rate_in) * 1000
    assert abs(measured_ms - make.GROUP_DELAY_MS) <= 1000 / rate_out
    assert make.GROUP_DELAY_MS < 2.0


def _speech_like(rate_hz: int, seconds: float) -> bytes:
    rng = np.random.default_rng(3)
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    x = 9000 * np.sin(2 * np.pi * 230 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    x += rng.normal(0, 1500, t.shape[0])
    pcm: Int16 = np.clip(np.round(x), -32768, 32767).astype("<i2")
    return pcm.tobytes()


@pytest.mark.parametrize(
    ("make", "rate_in"), [(audio.Downsampler24to8, 24000), (audio.Upsampler8to16, 8000)]
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_chunking_gives_the_same_samples_as_one_chunk(
    make: Resampler, rate_in: int, seed: int
) -> None:
    pcm = _speech_like(rate_in, 1.5)
    whole = make().process(pcm)
    rnd = random.Random(seed)
    converter = make()
    parts: list[bytes] = []
    i = 0
    while i < len(pcm):
        size = rnd.choice([1, 2, 3, 5, 7, 64, 321, 960, 4801, rnd.randrange(1, 9000)])
        parts.append(converter.process(pcm[i : i + size]))
        i += size
    chunked = b"".join(parts)
    assert len(chunked) == len(whole)
    diff = np.abs(_samples(chunked).astype(np.int32) - _samples(whole).astype(np.int32))
    assert int(diff.max()) <= 1


def test_full_scale_overshoot_is_clipped_not_wrapped() -> None:
    # A full-scale 400 Hz square wave low-passed overshoots to about ±38,000 (Gibbs);
    # without clipping the int16 cast would wrap those peaks to the opposite sign.
    square = np.where(np.arange(24000) % 60 < 30, 32767, -32768).astype("<i2")
    y = _samples(_down(square.tobytes())).astype(np.int32)
    phase = (3 * np.arange(y.shape[0]) - 31) % 60  # input phase under each output sample
    high = (phase >= 2) & (phase <= 26)
    low = (phase >= 32) & (phase <= 56)
    assert np.all(y[11:][high[11:]] > 20000)
    assert np.all(y[11:][low[11:]] < -20000)
    assert y.max() == 32767 and y.min() == -32768


def test_reset_forgets_history() -> None:
    down = audio.Downsampler24to8()
    down.process(_tone(1000.0, 24000, 0.1) + b"\x01")
    down.reset()
    probe = _tone(440.0, 24000, 0.05)
    assert down.process(probe) == audio.Downsampler24to8().process(probe)
    up = audio.Upsampler8to16()
    up.process(_tone(1000.0, 8000, 0.1))
    up.reset()
    assert up.process(probe) == audio.Upsampler8to16().process(probe)


# --- framing -----------------------------------------------------------------------------


def test_framer_holds_partial_frames_until_they_are_whole() -> None:
    framer = audio.OutboundFramer()
    assert framer.push(b"\x01" * 100) == []
    assert framer.pending == 100
    frames = framer.push(b"\x02" * 400)
    assert frames == [b"\x01" * 100 + b"\x02" * 60, b"\x02" * 160, b"\x02" * 160]
    assert framer.pending == 20
    assert framer.push(b"\x03" * 140) == [b"\x02" * 20 + b"\x03" * 140]
    assert framer.pending == 0


def test_framer_flush_pads_with_mulaw_silence_or_returns_the_raw_tail() -> None:
    framer = audio.OutboundFramer()
    framer.push(b"\x10" * 170)
    assert framer.flush() == [b"\x10" * 10 + b"\xff" * 150]
    assert framer.flush() == []
    framer.push(b"\x10" * 5)
    assert framer.flush(pad=False) == [b"\x10" * 5]
    assert framer.pending == 0


def test_framer_clear_drops_everything_buffered() -> None:
    framer = audio.OutboundFramer()
    framer.push(b"\x20" * 150)
    assert framer.clear() == 150
    assert framer.pending == 0
    assert framer.push(b"\x30" * 160) == [b"\x30" * 160]


def test_framer_frame_size_is_configurable() -> None:
    framer = audio.OutboundFramer(frame_bytes=320)
    assert framer.push(b"\x00" * 700) == [b"\x00" * 320, b"\x00" * 320]
    assert framer.pending == 60
