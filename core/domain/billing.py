"""The charge rule: what a finished call costs, given how long it ran.

A call is billed per started minute at the configured rate, and never for more than the
credits reserved for it when it started: the reservation is the customer's upper bound,
so a call that runs long costs the hold and no more. A call that never connected (no
duration) costs nothing. Only a `completed` call is charged at all; the settlement in
`core.app.call_status` decides that through `call_states.settlement`.
"""

from __future__ import annotations

import math


def charge_for(duration_sec: float | None, rate_cents_per_minute: int, reserved: int) -> int:
    """Credits to capture: started minutes × rate, capped by the reservation."""
    minutes = math.ceil(max(duration_sec or 0.0, 0.0) / 60)
    return min(minutes * rate_cents_per_minute, reserved)
