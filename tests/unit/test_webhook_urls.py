"""The webhook guard judges an IPv6 transition form by the IPv4 address it carries.

Every form (IPv4-mapped, IPv4-compatible, 6to4, Teredo server and client, NAT64) of
loopback, private, link-local metadata and shared addresses is refused; the same forms
of a public address stay allowed. Pure: literal addresses need no DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

import pytest

from core.adapters import webhook_urls
from core.domain.errors import CallagentError

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
PUBLIC_V4 = V4("8.8.8.8")
TEREDO_SERVER = V4("65.54.227.120")  # a public Teredo server


def _mapped(v4: V4) -> V6:
    return V6((0xFFFF << 32) | int(v4))


def _compatible(v4: V4) -> V6:
    return V6(int(v4))


def _sixtofour(v4: V4) -> V6:
    return V6((0x2002 << 112) | (int(v4) << 80))


def _nat64(v4: V4) -> V6:
    return V6((0x64FF9B << 96) | int(v4))


def _teredo(server: V4, client: V4) -> V6:
    # 2001:0000 | server | flags | obfuscated port | obfuscated client (RFC 4380)
    return V6(
        (0x20010000 << 96)
        | (int(server) << 64)
        | (0x1234 ^ 0xFFFF) << 32
        | (int(client) ^ 0xFFFFFFFF)
    )


FORMS: dict[str, Callable[[V4], V6]] = {
    "ipv4-mapped": _mapped,
    "ipv4-compatible": _compatible,
    "6to4": _sixtofour,
    "nat64": _nat64,
    "teredo-client": lambda v4: _teredo(TEREDO_SERVER, v4),
    "teredo-server": lambda v4: _teredo(v4, PUBLIC_V4),
}
REFUSED_V4 = {
    "loopback": V4("127.0.0.1"),
    "private": V4("10.1.2.3"),
    "metadata": V4("169.254.169.254"),
    "shared": V4("100.100.100.200"),
    "unspecified": V4("0.0.0.0"),
}


def test_the_forms_carry_what_they_claim() -> None:
    for form in FORMS.values():
        assert V4("127.0.0.1") in webhook_urls.embedded_ipv4(form(V4("127.0.0.1")))
    assert webhook_urls.embedded_ipv4(_teredo(TEREDO_SERVER, V4("10.1.2.3"))) == [
        TEREDO_SERVER,
        V4("10.1.2.3"),
    ]
    assert webhook_urls.embedded_ipv4(V6("2001:4860:4860::8888")) == []


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", REFUSED_V4)
def test_every_form_of_a_refused_ipv4_is_refused(form: str, kind: str) -> None:
    address = FORMS[form](REFUSED_V4[kind])
    assert not webhook_urls.is_public(address), str(address)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_of_a_public_ipv4_stays_allowed(form: str) -> None:
    address = FORMS[form](PUBLIC_V4)
    assert webhook_urls.is_public(address), str(address)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1::808:808",  # NAT64 local-use: refused whole, even for a public IPv4
        "64:ff9b:1:ffff::7f00:1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "ff02::1",
    ],
)
def test_refused_ipv6(address: str) -> None:
    assert not webhook_urls.is_public(V6(address))


@pytest.mark.parametrize("address", ["2001:4860:4860::8888", "2606:4700:4700::1111"])
def test_native_public_ipv6_is_allowed(address: str) -> None:
    assert webhook_urls.is_public(V6(address))


@pytest.mark.parametrize(
    "url",
    [
        "https://[2002:7f00:1::]/x",  # 6to4 loopback, the report in issue #11
        "https://[2002:a9fe:a9fe::]/latest/meta-data",  # 6to4 metadata
        "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x",  # Teredo client 127.0.0.1
        "https://[64:ff9b::a01:203]/x",  # NAT64 10.1.2.3
        "https://[::7f00:1]/x",  # IPv4-compatible loopback
    ],
)
async def test_check_refuses_transition_forms(url: str) -> None:
    with pytest.raises(CallagentError) as caught:
        await webhook_urls.check(url)
    assert caught.value.reason == "INVALID_ARGUMENT_WEBHOOK_URL"
    assert "non-public address" in str(caught.value)


async def test_check_accepts_the_6to4_form_of_a_public_address() -> None:
    assert await webhook_urls.check("https://[2002:808:808::]/x") == "https://[2002:808:808::]/x"


async def test_a_resolver_that_never_answers_is_a_refusal_not_a_stall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never_answers(*_args: object, **_kwargs: object) -> list[object]:
        await asyncio.Event().wait()
        return []

    monkeypatch.setattr(webhook_urls, "RESOLVE_TIMEOUT_SEC", 0.05)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", never_answers)
    with pytest.raises(CallagentError) as refused:
        await webhook_urls.check("https://hooks.example.com/x")
    assert refused.value.reason == "INVALID_ARGUMENT_WEBHOOK_URL"
    assert "did not resolve in time" in refused.value.message
