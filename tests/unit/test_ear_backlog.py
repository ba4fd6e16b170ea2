"""The callee's audio kept for the supervisor's ear until it starts (`EarBacklog`)."""

from __future__ import annotations

from media.call.inbound import EarBacklog


def frame(n: int) -> bytes:
    return bytes([n % 256]) * 160  # one 20 ms μ-law frame


def test_every_frame_is_handed_over_in_order_in_chunks() -> None:
    backlog = EarBacklog(chunk_bytes=400)
    frames = [frame(n) for n in range(7)]
    for f in frames:
        backlog.push(f)
    chunks = backlog.drain()
    assert b"".join(chunks) == b"".join(frames)
    assert [len(c) for c in chunks] == [480, 480, 160]
    assert backlog.dropped_ms == 0
    assert backlog.drain() == []


def test_only_the_newest_audio_is_kept_and_the_dropped_start_is_counted() -> None:
    backlog = EarBacklog(max_bytes=3 * 160)
    for n in range(5):
        backlog.push(frame(n))
    assert b"".join(backlog.drain()) == frame(2) + frame(3) + frame(4)
    assert backlog.dropped_ms == 40  # two 20 ms frames
