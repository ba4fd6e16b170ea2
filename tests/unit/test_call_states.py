"""The call state machine and what each status change does to the credit reservation."""

from __future__ import annotations

import pytest

from core.domain import call_states as st
from core.domain.errors import CallagentError


@pytest.mark.parametrize("status", sorted(st.ALL))
def test_a_repeated_status_is_a_no_op(status: str) -> None:
    assert st.should_apply(status, status) is False


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (st.QUEUED, st.SCHEDULED),
        (st.SCHEDULED, st.DIALING),
        (st.SCHEDULED, st.COMPLETED),  # callbacks may overtake the create-call response
        (st.SCHEDULED, st.QUEUED),  # a dialer died after claiming, before dialing
        (st.DIALING, st.RINGING),
        (st.RINGING, st.IN_PROGRESS),
        (st.IN_PROGRESS, st.COMPLETED),
        (st.IN_PROGRESS, st.CANCELLED),
    ],
)
def test_allowed_changes_apply(source: str, target: str) -> None:
    assert st.should_apply(source, target) is True


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (st.QUEUED, st.DIALING),
        (st.IN_PROGRESS, st.RINGING),
        (st.IN_PROGRESS, st.BUSY),
        (st.DIALING, st.QUEUED),
    ]
    + [(end, st.IN_PROGRESS) for end in st.TERMINAL_IN_ORDER]
    + [(end, other) for end in st.TERMINAL_IN_ORDER for other in st.TERMINAL if other != end],
)
def test_forbidden_changes_raise_illegal_transition(source: str, target: str) -> None:
    with pytest.raises(CallagentError) as caught:
        st.should_apply(source, target)
    assert caught.value.reason == "ILLEGAL_TRANSITION"
    assert caught.value.message == f"a {source} call cannot become {target}"
    assert caught.value.metadata == {"status": source}


def test_terminal_statuses_have_no_way_out() -> None:
    assert all(st.ALLOWED[end] == frozenset() for end in st.TERMINAL)
    assert set(st.TERMINAL_IN_ORDER) == st.TERMINAL
    assert not st.TERMINAL & st.IN_FLIGHT


def test_sources_of_lists_every_entry_point_and_refuses_unknown_statuses() -> None:
    assert st.sources_of(st.QUEUED) == [st.SCHEDULED]
    assert st.sources_of(st.SCHEDULED) == [st.QUEUED]
    with pytest.raises(ValueError):
        st.sources_of("teleported")


@pytest.mark.parametrize(
    ("target", "settlement"),
    [
        (st.COMPLETED, "capture"),
        (st.BUSY, "release"),
        (st.NO_ANSWER, "release"),
        (st.FAILED, "release"),
        (st.CANCELLED, "release"),
        (st.SCHEDULED, None),
        (st.DIALING, None),
        (st.IN_PROGRESS, None),
    ],
)
def test_only_the_end_of_a_call_settles_its_reservation(
    target: str, settlement: str | None
) -> None:
    assert st.settlement(target) == settlement


@pytest.mark.parametrize(
    ("status", "media_attached", "reported", "target"),
    [
        (st.IN_PROGRESS, True, False, None),  # media's report due, or media gone: wait
        (st.RINGING, True, False, None),  # the in-progress callback came late
        (st.IN_PROGRESS, True, True, st.COMPLETED),  # the outcome is in: charge
        (st.IN_PROGRESS, False, False, st.FAILED),  # no agent ever ran: nothing charged
        (st.RINGING, False, False, st.FAILED),
        (st.FAILED, True, False, st.COMPLETED),  # already over: the state machine decides
    ],
)
def test_a_carrier_completion_charges_only_a_call_an_agent_reported_on(
    status: str, media_attached: bool, reported: bool, target: str | None
) -> None:
    assert (
        st.on_carrier_completed(status, media_attached=media_attached, reported=reported) == target
    )
