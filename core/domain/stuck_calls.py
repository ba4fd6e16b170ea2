"""Why the reconciler closes a call: the true reason, from what the call row shows. Pure.

The reconciler only sees the call row (status, call sid, owner pod, whether a dial
started, time since the last change); a media session lives in one replica's memory and
leaves no row. So a message names what is known: the dial never started, the carrier
never acknowledged it, the carrier went quiet, or an answered call lost its media. A media
session that broke and did not come back is named at once (`lost_session_summary`).
"""

from __future__ import annotations

from core.domain import call_states as st

CLOSED = "closed by the reconciler"

# A call the carrier completed that no media session ever attached to: no agent spoke on it.
NO_MEDIA_SUMMARY = (
    "answered, but no media session ever attached (the media server refused the stream "
    "or could not reach core); nothing charged"
)


def stuck_summary(
    status: str,
    *,
    idle_sec: float,
    dial_started: bool,
    call_sid: str | None,
    owner_pod: str | None,
) -> str:
    """The outcome summary of a call failed after `idle_sec` seconds without any change."""
    idle = int(idle_sec)
    if status != st.IN_PROGRESS:
        if call_sid:
            return f"no carrier progress for {idle} s while {status}; {CLOSED}"
        if dial_started:
            return (
                f"the carrier never acknowledged the dial (no call sid after {idle} s), "
                f"so whether it placed the call is unknown; {CLOSED}"
            )
        return f"never dialed: {status} for {idle} s without a dial starting; {CLOSED}"
    if not owner_pod:
        return f"answered, but no media session ever attached (no activity for {idle} s); {CLOSED}"
    return (
        f"no media or carrier activity for {idle} s; the media session on pod "
        f"{owner_pod} is presumed gone; {CLOSED}"
    )


def lost_session_summary(
    owner_pod: str | None, grace_sec: float, *, carrier_ended: bool = False
) -> str:
    """The outcome summary of a call whose media session broke and was not re-attached."""
    pod = f" on pod {owner_pod}" if owner_pod else ""
    end = "the carrier had ended the call" if carrier_ended else "the call was hung up"
    return (
        f"the call's media session{pod} broke and did not come back within {grace_sec:g} s "
        f"(the media server stopped or was cut off); {end}"
    )
