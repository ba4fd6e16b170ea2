"""Which webhook URLs we will POST to: HTTPS only, and never to a private address.

The host is resolved and every address it resolves to must be public; loopback,
private, link-local (cloud metadata 169.254.169.254 included), shared (100.64/10),
multicast, reserved and unspecified addresses are refused. An IPv6 address that carries
an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64) is judged by the
IPv4 address(es) it carries, so those forms of a refused address are refused too; the
NAT64 local-use prefix is refused whole, since where it embeds the IPv4 address depends
on the operator's prefix length. The same check runs again at delivery time (DNS rebinding).
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
RESOLVE_TIMEOUT_SEC = 2.0
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291), still routed by some
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def _refuse(message: str) -> CallagentError:
    return CallagentError("INVALID_ARGUMENT_WEBHOOK_URL", message)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 address(es) an IPv6 transition form carries, or [] for a native address.

    Teredo carries two, the server and the (de-obfuscated) client; both are returned.
    """
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    if address in _NAT64_WELL_KNOWN or address in _IPV4_COMPATIBLE:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def _is_public_ipv4(address: ipaddress.IPv4Address) -> bool:
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address in _SHARED
    )


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv4Address):
        return _is_public_ipv4(address)
    if address in _NAT64_LOCAL_USE:
        return False
    if address in _IPV4_COMPATIBLE and int(address) <= 1:
        return False  # :: and ::1, the unspecified and loopback addresses
    carried = embedded_ipv4(address)
    if carried:
        return all(_is_public_ipv4(v4) for v4 in carried)
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_site_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
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
    """The host's addresses; a resolver that does not answer within RESOLVE_TIMEOUT_SEC
    counts as unresolvable, so a request never waits on a stuck DNS server."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SEC):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise _refuse(f"webhook host {host!r} did not resolve in time") from None
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
