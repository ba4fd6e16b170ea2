"""Which webhook URLs we will POST to: HTTPS only, and never to a private address.

The host is resolved and every address it resolves to must be public; loopback,
private, link-local (cloud metadata 169.254.169.254 included), shared (100.64/10),
multicast, reserved and unspecified addresses are refused, as are IPv4-mapped IPv6
forms of them. The same check runs again at delivery time (DNS rebinding).
WEBHOOK_ALLOWED_HOSTS exempts named hosts or CIDRs (for tests and private setups).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Sequence

from core.domain.errors import CallagentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def _refuse(message: str) -> CallagentError:
    return CallagentError("INVALID_ARGUMENT_WEBHOOK_URL", message)


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED)
    )


def _allowed(host: str, addresses: Sequence[IPAddress], allow: Sequence[str]) -> bool:
    if host in allow:
        return True
    networks = []
    for entry in allow:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return bool(addresses) and all(any(a in n for n in networks) for a in addresses)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise _refuse(f"webhook host {host!r} could not be resolved") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def check(url: str, allow: Sequence[str] = ()) -> str:
    """Return the URL if it is an acceptable webhook target.

    Raises:
        CallagentError: INVALID_ARGUMENT_WEBHOOK_URL, with the reason in the message.
    """
    if len(url) > 2083:
        raise _refuse("webhook URL is longer than 2083 characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise _refuse("webhook URL is not a valid URL") from None
    if parts.scheme != "https":
        raise _refuse("webhook URL must use https://")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _refuse("webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise _refuse("webhook URL must not carry credentials")
    if host in allow:
        return url
    if host.lower() in _METADATA_HOSTS:
        raise _refuse("webhook host is a cloud metadata endpoint")
    addresses = await _resolve(host, port)
    if _allowed(host, addresses, allow):
        return url
    for address in addresses:
        if not is_public(address):
            raise _refuse(
                f"webhook host {host!r} resolves to a non-public address ({address}); "
                "loopback, private, link-local and metadata addresses are refused"
            )
    return url
