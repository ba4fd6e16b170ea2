"""PUT/DELETE /users/me/webhook: HTTPS only, private targets refused, secret shown once."""

from __future__ import annotations

import httpx
import pytest

from core.app import api_keys
from core.main import Core


@pytest.fixture
def headers(customer: api_keys.CreatedKey) -> dict[str, str]:
    return {"X-API-Key": customer.api_key}


async def test_set_rotates_and_shows_secret_once(
    http: httpx.AsyncClient, core: Core, headers: dict[str, str], customer: api_keys.CreatedKey
) -> None:
    first = await http.put(
        "/users/me/webhook", json={"url": "https://93.184.216.34/hook"}, headers=headers
    )
    assert first.status_code == 200, first.text
    secret = first.json()["secret"]
    assert secret and secret.startswith("whsec_")
    me = (await http.get("/users/me", headers=headers)).json()
    assert me["ask_user_webhook_url"] == "https://93.184.216.34/hook"
    assert me["ask_user_webhook_configured"] is True
    assert secret not in str(me)

    kept = await http.put(
        "/users/me/webhook",
        json={"url": "https://93.184.216.34/other", "regenerate_secret": False},
        headers=headers,
    )
    assert kept.json()["secret"] is None
    stored = await core.pool.fetchval(
        "SELECT ask_user_webhook_secret FROM customers WHERE customer_id = $1", customer.customer_id
    )
    assert stored == secret

    rotated = await http.put(
        "/users/me/webhook", json={"url": "https://93.184.216.34/other"}, headers=headers
    )
    assert rotated.json()["secret"] not in (None, secret)


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/hook",  # plain http
        "ftp://93.184.216.34/hook",
        "https://127.0.0.1/hook",  # loopback
        "https://localhost:8443/hook",  # resolves to loopback
        "https://10.1.2.3/hook",  # private
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "https://metadata.google.internal/computeMetadata",
        "https://100.100.100.200/",  # shared address space (Alibaba metadata)
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
        "https://[2002:7f00:1::]/x",  # 6to4 loopback (issue #11)
        "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x",  # Teredo, client 127.0.0.1
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 metadata
        "https://[64:ff9b:1::808:808]/x",  # NAT64 local-use prefix: refused whole
        "https://[fd00:ec2::254]/",  # AWS IPv6 metadata (ULA)
        "https://0.0.0.0/hook",
        "https://user:pw@93.184.216.34/hook",  # credentials in URL
        "https:///nohost",
        "https://no-such-host.invalid/hook",  # does not resolve
    ],
)
async def test_refused_targets(http: httpx.AsyncClient, headers: dict[str, str], url: str) -> None:
    response = await http.put("/users/me/webhook", json={"url": url}, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]["code"] == "INVALID_ARGUMENT_WEBHOOK_URL"


async def test_refusal_keeps_previous_webhook(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await http.put("/users/me/webhook", json={"url": "https://93.184.216.34/a"}, headers=headers)
    await http.put("/users/me/webhook", json={"url": "https://127.0.0.1/b"}, headers=headers)
    me = (await http.get("/users/me", headers=headers)).json()
    assert me["ask_user_webhook_url"] == "https://93.184.216.34/a"


async def test_schema_violations_are_422(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    empty = await http.put("/users/me/webhook", json={"url": ""}, headers=headers)
    too_long = await http.put(
        "/users/me/webhook", json={"url": "https://93.184.216.34/" + "a" * 2100}, headers=headers
    )
    missing = await http.put("/users/me/webhook", json={}, headers=headers)
    assert empty.status_code == too_long.status_code == missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "url"]


async def test_clear_removes_url_and_secret(
    http: httpx.AsyncClient, core: Core, headers: dict[str, str], customer: api_keys.CreatedKey
) -> None:
    await http.put("/users/me/webhook", json={"url": "https://93.184.216.34/a"}, headers=headers)
    response = await http.delete("/users/me/webhook", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"cleared": True}
    row = await core.pool.fetchrow(
        "SELECT ask_user_webhook_url, ask_user_webhook_secret "
        "FROM customers WHERE customer_id = $1",
        customer.customer_id,
    )
    assert row is not None
    assert row["ask_user_webhook_url"] is None and row["ask_user_webhook_secret"] is None


async def test_allow_list_setting_admits_loopback() -> None:
    from core.adapters import webhook_urls

    assert await webhook_urls.check("https://127.0.0.1:9443/h", ["127.0.0.0/8"]) == (
        "https://127.0.0.1:9443/h"
    )
    assert await webhook_urls.check("https://localhost/h", ["localhost"]) == "https://localhost/h"
