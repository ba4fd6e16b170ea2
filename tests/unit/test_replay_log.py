"""ReplayLog: what media keeps for core until acknowledged, and what a re-attach replays."""

from __future__ import annotations

from callagent.v1 import media_pb2

from media.call.replay_log import ReplayLog


def signal(name: str) -> media_pb2.SessionRequest:
    return media_pb2.SessionRequest(signal=media_pb2.ReservationSignal(name=name))


def test_reports_are_numbered_in_order_and_kept_until_acknowledged() -> None:
    log = ReplayLog(10)
    for name in ("a", "b", "c"):
        assert log.add(signal(name))
    assert [r.seq for r in log.after(0)] == [1, 2, 3]
    assert [r.signal.name for r in log.after(1)] == ["b", "c"]  # the writer's next batch
    log.ack(2)
    assert [r.seq for r in log.after(0)] == [3]  # a re-attach replays only the unacknowledged
    log.ack(2)  # a repeated ack changes nothing
    assert len(log) == 1


def test_numbering_goes_on_after_acks_so_a_seq_is_never_reused() -> None:
    log = ReplayLog(10)
    log.add(signal("a"))
    log.ack(1)
    log.add(signal("b"))
    assert [r.seq for r in log.after(0)] == [2]


def test_a_full_log_refuses_new_reports_without_numbering_them() -> None:
    log = ReplayLog(2)
    assert log.add(signal("a")) and log.add(signal("b"))
    refused = signal("c")
    assert not log.add(refused)
    assert refused.seq == 0
    log.ack(1)
    assert log.add(signal("d"))
    assert [r.seq for r in log.after(0)] == [2, 3]


def test_numbering_can_start_anywhere_so_a_new_link_never_reuses_a_seq() -> None:
    log = ReplayLog(10, first_seq=1_733_000_000_000_000)
    log.add(signal("a"))
    log.add(signal("b"))
    assert [r.seq for r in log.after(0)] == [1_733_000_000_000_000, 1_733_000_000_000_001]
