"""CPU cost of the media codec path per call-second, both directions, no sockets.

Inbound, 50 times a second: Twilio `media` JSON -> parse + base64 -> μ-law -> PCM16 8 kHz ->
16 kHz for Gemini. Outbound, Gemini's 24 kHz PCM16 in 100 ms chunks (10 a second) -> 8 kHz ->
μ-law -> 160-byte frames -> 50 `media` JSON strings. Each run simulates `SECONDS`
call-seconds and reads `time.process_time`; the figure is the median of `RUNS` runs.

Target on the 2-core dev box: ≤ 1.5 ms CPU per call-second (perf-anchors.md measured 0.9-1.3
for the aliasing stdlib/soxr-QQ paths). Run alone with `python -m tests.bench.bench_codec`.
"""

from __future__ import annotations

import binascii
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from media.codec import audio, twilio_codec

SECONDS = 40
RUNS = 5
FRAMES_PER_SECOND = 50
MODEL_CHUNK_BYTES = 4800  # 100 ms of 24 kHz PCM16, as Gemini Live sends it
STREAM_SID = "MZ" + "0123456789abcdef" * 2
TARGET_MS = 1.5


def _caller_messages(seconds: int) -> list[str]:
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal(8000 * seconds) * 2000).astype("<i2").tobytes()
    mulaw = audio.pcm16_to_ulaw(pcm)
    return [
        twilio_codec.inbound_media(STREAM_SID, i + 2, i + 1, i * 20, mulaw[i * 160 : i * 160 + 160])
        for i in range(seconds * FRAMES_PER_SECOND)
    ]


def _model_chunks(seconds: int) -> list[bytes]:
    t = np.arange(24000 * seconds) / 24000
    voice = 6000 * np.sin(2 * np.pi * 220 * t) + 1500 * np.sin(2 * np.pi * 5300 * t)
    pcm = voice.astype("<i2").tobytes()
    return [pcm[i : i + MODEL_CHUNK_BYTES] for i in range(0, len(pcm), MODEL_CHUNK_BYTES)]


def _inbound(messages: Sequence[str]) -> None:
    up = audio.Upsampler8to16()
    for text in messages:
        event = twilio_codec.parse(text)
        assert isinstance(event, twilio_codec.Media)
        up.process(audio.ulaw_to_pcm16(event.payload))


def _outbound(chunks: Sequence[bytes]) -> None:
    down = audio.Downsampler24to8()
    framer = audio.OutboundFramer()
    for chunk in chunks:
        for frame in framer.push(audio.pcm16_to_ulaw(down.process(chunk))):
            twilio_codec.media(STREAM_SID, frame)


def _cpu_seconds(work: Callable[[], Any]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def _median_cpu(work: Callable[[], Any]) -> float:
    work()  # warm caches and lazy imports
    return statistics.median(_cpu_seconds(work) for _ in range(RUNS))


def _per_call_us(fn: Callable[[Any], Any], items: Sequence[Any], frames: int) -> float:
    """Median CPU µs per 20 ms frame of `fn` over `items` that together hold `frames` frames."""

    def loop() -> None:
        for item in items:
            fn(item)

    return _median_cpu(loop) / frames * 1e6


def run() -> dict[str, float]:
    messages = _caller_messages(SECONDS)
    chunks = _model_chunks(SECONDS)
    frames = SECONDS * FRAMES_PER_SECOND

    inbound_s = _median_cpu(lambda: _inbound(messages))
    outbound_s = _median_cpu(lambda: _outbound(chunks))

    media_events = [twilio_codec.parse(m) for m in messages]
    payloads = [e.payload for e in media_events if isinstance(e, twilio_codec.Media)]
    b64 = [orjson.loads(m)["media"]["payload"] for m in messages]
    pcm8_in = [audio.ulaw_to_pcm16(p) for p in payloads]
    down = audio.Downsampler24to8()
    pcm8_out = [down.process(c) for c in chunks]
    ulaw_out = [audio.pcm16_to_ulaw(p) for p in pcm8_out]
    up = audio.Upsampler8to16()
    steps = {
        "orjson_loads_us": _per_call_us(orjson.loads, messages, frames),
        "base64_decode_us": _per_call_us(binascii.a2b_base64, b64, frames),
        "parse_media_us": _per_call_us(twilio_codec.parse, messages, frames),
        "ulaw_to_pcm16_us": _per_call_us(audio.ulaw_to_pcm16, payloads, frames),
        "upsample_8to16_us": _per_call_us(up.process, pcm8_in, frames),
        "downsample_24to8_us": _per_call_us(down.process, chunks, frames),
        "pcm16_to_ulaw_us": _per_call_us(audio.pcm16_to_ulaw, pcm8_out, frames),
        "framer_us": _per_call_us(audio.OutboundFramer().push, ulaw_out, frames),
        "encode_media_us": _per_call_us(
            lambda p: twilio_codec.media(STREAM_SID, p), payloads, frames
        ),
    }
    return {
        "codec_ms_per_call_second": (inbound_s + outbound_s) / SECONDS * 1e3,
        "inbound_us_per_frame": inbound_s / frames * 1e6,
        "outbound_us_per_frame": outbound_s / frames * 1e6,
        **steps,
    }


def main() -> None:
    figures = run()
    print(
        f"codec: {figures['codec_ms_per_call_second']:.2f} ms CPU per call-second"
        f" (target ≤ {TARGET_MS})"
    )
    print(
        f"  per 20 ms frame: inbound {figures['inbound_us_per_frame']:.1f} µs,"
        f" outbound {figures['outbound_us_per_frame']:.1f} µs"
    )
    for name, value in figures.items():
        if name.endswith("_us"):
            print(f"  {name.removesuffix('_us'):<20} {value:6.2f} µs")


if __name__ == "__main__":
    main()
