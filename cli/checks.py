"""What `callagent doctor` found, as lines a person reads and an exit code a script reads.

Pure: no I/O, so the wording and the exit rule are unit-tested. Each check ends in one of
four words: OK; MISSING (a variable to set); INVALID (what the provider said, secrets
scrubbed); SKIPPED (it needs another check to pass first). A provider left wholly unset is
not a failure, because `make run` puts its stand-in from `sim/` in its place; a provider
configured by halves is one.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import urllib.parse
from collections.abc import Iterable

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


class Status(enum.StrEnum):
    OK = "OK"
    MISSING = "MISSING"
    INVALID = "INVALID"
    SKIPPED = "SKIPPED"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One check's verdict. `blocking` marks a MISSING that fails the run (a half-set
    provider); INVALID always fails, OK and SKIPPED never do."""

    name: str
    status: Status
    detail: str
    blocking: bool = False

    @property
    def fails(self) -> bool:
        return self.status is Status.INVALID or (self.status is Status.MISSING and self.blocking)


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def missing(name: str, detail: str, *, blocking: bool) -> Check:
    return Check(name, Status.MISSING, detail, blocking)


def invalid(name: str, detail: str) -> Check:
    return Check(name, Status.INVALID, detail)


def skipped(name: str, detail: str) -> Check:
    return Check(name, Status.SKIPPED, detail)


def line(check: Check) -> str:
    """`INVALID  twilio account     Twilio said 401 (20003): Authenticate`."""
    return f"{check.status.value:<8} {check.name:<18} {check.detail}"


def exit_code(checks: Iterable[Check]) -> int:
    """0 only when nothing configured is wrong or half-set."""
    return 1 if any(check.fails for check in checks) else 0


def summary(checks: list[Check], simulated: list[str]) -> str:
    """The closing line: what failed, or what is ready and what `make run` would simulate."""
    failed = [c.name for c in checks if c.fails]
    if failed:
        return f"not ready: fix {', '.join(failed)}"
    if simulated:
        return f"ok; simulated by `make run` (not configured): {', '.join(simulated)}"
    return "ready for real calls: try `callagent smoke <your phone>`"


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret replaced, so a provider's echo never reaches the terminal."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def public_url_problem(url: str) -> str | None:
    """Why Twilio could not call back on `url`, judged from the URL alone; None if it can.

    Twilio needs https (Media Streams are wss://) on a host the internet reaches, and our
    signature checks rebuild the URL Twilio signed from this value, so it has no query.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https":
        return f"must be https:// (Media Streams need wss://), not {parts.scheme or 'no'} scheme"
    if parts.query or parts.fragment:
        return "must have no query string or fragment (webhook signatures are over the URL)"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "has no host"
    problem = host_problem(host)
    return None if problem is None else f"host {host} {problem}"


def host_problem(host: str) -> str | None:
    """Why a host name or address is unreachable from the internet, or None."""
    if host in LOOPBACK_NAMES or host.endswith(PRIVATE_SUFFIXES):
        return "is a local name Twilio cannot reach"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback:
        return "is loopback: Twilio cannot reach it (use a tunnel or a load balancer)"
    if address.is_private or address.is_link_local or address.is_unspecified:
        return "is a private address Twilio cannot reach"
    if address.is_reserved or address.is_multicast:
        return "is not a routable address"
    return None
