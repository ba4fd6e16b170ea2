"""A small reader of MP3 frame headers, for tests that check a file really is MP3.

Nothing here decodes audio: it walks the frames by their headers (ISO 11172-3 / 13818-3
Layer III), checking each sync word and that the frames tile the file exactly, and adds
up their samples. That is enough to tell an MP3 from WAV bytes under an `.mp3` name and to
know how long it plays.
"""

from __future__ import annotations

import dataclasses

# bit rates (kbit/s) by index, for MPEG-1 and for MPEG-2/2.5, Layer III
_BIT_RATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    offset: int
    size: int
    sample_rate: int
    bit_rate_kbps: int
    samples: int
    channels: int


def frames(data: bytes) -> list[Frame]:
    """Every Layer III frame of `data`, which must be MP3 from its first byte (after an
    ID3v2 tag, if any) to its last; raises ValueError at the first byte that is not."""
    offset = _skip_id3(data)
    found: list[Frame] = []
    while offset < len(data):
        header = data[offset : offset + 4]
        if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
            raise ValueError(f"no MP3 frame sync at byte {offset}")
        version = (header[1] >> 3) & 0b11  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
        layer = (header[1] >> 1) & 0b11  # 1 = Layer III
        rate_index, sr_index = header[2] >> 4, (header[2] >> 2) & 0b11
        if version == 1 or layer != 1 or rate_index in (0, 15) or sr_index == 3:
            raise ValueError(f"not a Layer III frame header at byte {offset}: {header.hex()}")
        mpeg1 = version == 3
        bit_rate = _BIT_RATES[1 if mpeg1 else 2][rate_index]
        sample_rate = _SAMPLE_RATES[version][sr_index]
        samples = 1152 if mpeg1 else 576
        padding = (header[2] >> 1) & 1
        size = samples // 8 * bit_rate * 1000 // sample_rate + padding
        channels = 1 if header[3] >> 6 == 0b11 else 2
        found.append(Frame(offset, size, sample_rate, bit_rate, samples, channels))
        offset += size
    if offset != len(data):
        raise ValueError("the last frame runs past the end of the file")
    return found


def duration_s(data: bytes) -> float:
    """How long the MP3 plays, from its frames."""
    return sum(f.samples / f.sample_rate for f in frames(data))


def _skip_id3(data: bytes) -> int:
    if not data.startswith(b"ID3"):
        return 0
    size = 0
    for byte in data[6:10]:  # synchsafe: 7 bits a byte
        size = size << 7 | byte & 0x7F
    return 10 + size
