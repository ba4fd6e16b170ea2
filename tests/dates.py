"""Tomorrow as the simulated world reads it, for tests that may run across midnight.

The sim agent and venues resolve "tomorrow" from the clock when the call starts, so a
test that fixed the date at import time fails when the suite crosses midnight (CI did).
A test asks for `tomorrow()` just before it places a call and checks the booked day is
one of the dates "tomorrow" named while the call ran.
"""

import datetime


def tomorrow() -> str:
    """Tomorrow's ISO date on this machine's clock, as the sim world reads it."""
    return (datetime.date.today() + datetime.timedelta(days=1)).isoformat()


def tomorrows_since(asked: str) -> set[str]:
    """The dates "tomorrow" named between `asked` (taken before the call) and now."""
    return {asked, tomorrow()}
