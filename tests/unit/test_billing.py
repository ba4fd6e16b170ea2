"""The charge rule: per started minute, capped by the reservation."""

from __future__ import annotations

import pytest

from core.domain.billing import charge_for


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (None, 0),  # never connected
        (0.0, 0),
        (-5.0, 0),  # a nonsense duration costs nothing rather than going negative
        (0.1, 10),  # a started minute is a minute
        (60.0, 10),
        (60.001, 20),
        (119.9, 20),
        (600.0, 100),
    ],
)
def test_billed_per_started_minute(duration: float | None, expected: int) -> None:
    assert charge_for(duration, 10, reserved=1000) == expected


def test_never_more_than_was_reserved() -> None:
    assert charge_for(3600.0, 10, reserved=100) == 100
    assert charge_for(61.0, 60, reserved=100) == 100
    assert charge_for(61.0, 0, reserved=100) == 0
