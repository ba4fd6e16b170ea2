"""Accounts through the real stack: gateway → core → PostgreSQL."""

from __future__ import annotations

import time

import httpx

from core.app import api_keys
from core.domain import gateway_context
from core.main import Core
from tests.conftest import BOOTSTRAP_KEY, CONTEXT_SECRET, new_customer


async def test_me_returns_profile_quota_and_maintenance(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    response = await http.get("/users/me", headers={"X-API-Key": customer.api_key})
    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] == customer.customer_id
    assert body["api_key_id"] == customer.api_key_id
    assert body["api_key_last_4"] == customer.api_key[-4:]
    assert body["quota_limit"] == 10_000
    assert body["current_usage"] == 0
    assert body["quota_period"] == "monthly"
    assert body["max_concurrent_calls"] == 1
    assert body["is_admin"] is False
    assert body["maintenance"] is None
    assert body["ask_user_webhook_configured"] is False


async def test_key_is_stored_only_as_hash(core: Core, customer: api_keys.CreatedKey) -> None:
    rows = await core.pool.fetch("SELECT * FROM api_keys")
    dump = repr([dict(r) for r in rows])
    assert customer.api_key not in dump
    assert customer.api_key[4:-4] not in dump
    stored = await core.pool.fetchval(
        "SELECT key_hash FROM api_keys WHERE api_key_id = $1", customer.api_key_id
    )
    assert stored == api_keys.hash_key(customer.api_key)


async def test_missing_and_unknown_keys_are_401(http: httpx.AsyncClient) -> None:
    missing = await http.get("/users/me")
    unknown = await http.get("/users/me", headers={"X-API-Key": "ck_nope"})
    assert missing.status_code == unknown.status_code == 401
    assert missing.json()["detail"]["code"] == "UNAUTHENTICATED_KEY"
    assert unknown.json()["detail"]["code"] == "UNAUTHENTICATED_KEY"


async def test_revoked_key_is_401(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey
) -> None:
    await core.pool.execute("UPDATE api_keys SET revoked_at = now()")
    response = await http.get("/users/me", headers={"X-API-Key": customer.api_key})
    assert response.status_code == 401


async def test_bootstrap_admin_key_is_admin(http: httpx.AsyncClient) -> None:
    response = await http.get("/users/me", headers={"X-API-Key": BOOTSTRAP_KEY})
    assert response.status_code == 200
    assert response.json()["is_admin"] is True


async def test_maintenance_shows_in_me(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey
) -> None:
    await core.pool.execute(
        "UPDATE maintenance SET active = true, message = 'db upgrade', "
        "resume_at = '2030-01-01T10:00:00Z'"
    )
    body = (await http.get("/users/me", headers={"X-API-Key": customer.api_key})).json()
    assert body["maintenance"]["message"] == "db upgrade"
    assert body["maintenance"]["resume_at"].startswith("2030-01-01T10:00:00")


async def test_limits_bounds(http: httpx.AsyncClient, customer: api_keys.CreatedKey) -> None:
    headers = {"X-API-Key": customer.api_key}
    for bad in (0, 101, -5):
        response = await http.put(
            "/users/me/limits", json={"max_concurrent_calls": bad}, headers=headers
        )
        assert response.status_code == 422
    for good in (1, 100, 7):
        response = await http.put(
            "/users/me/limits", json={"max_concurrent_calls": good}, headers=headers
        )
        assert response.status_code == 200
        assert response.json() == {"max_concurrent_calls": good}
    me = (await http.get("/users/me", headers=headers)).json()
    assert me["max_concurrent_calls"] == 7


async def test_limits_need_auth(http: httpx.AsyncClient) -> None:
    response = await http.put("/users/me/limits", json={"max_concurrent_calls": 3})
    assert response.status_code == 401


async def test_customers_are_isolated(http: httpx.AsyncClient, core: Core) -> None:
    a = await new_customer(core.pool)
    b = await new_customer(core.pool)
    await http.put(
        "/users/me/limits", json={"max_concurrent_calls": 9}, headers={"X-API-Key": a.api_key}
    )
    me_b = (await http.get("/users/me", headers={"X-API-Key": b.api_key})).json()
    assert me_b["customer_id"] == b.customer_id
    assert me_b["max_concurrent_calls"] == 1


class TestSignedGatewayContext:
    async def test_valid_context_is_accepted_when_fronted(
        self, fronted_http: httpx.AsyncClient, fronted_customer: api_keys.CreatedKey
    ) -> None:
        ctx = gateway_context.sign(
            CONTEXT_SECRET,
            fronted_customer.customer_id,
            fronted_customer.api_key_id,
            time.time() + 60,
        )
        response = await fronted_http.get("/users/me", headers={"X-Gateway-Context": ctx})
        assert response.status_code == 200
        assert response.json()["customer_id"] == fronted_customer.customer_id

    async def test_rejections(
        self, fronted_http: httpx.AsyncClient, fronted_customer: api_keys.CreatedKey
    ) -> None:
        c = fronted_customer
        good = gateway_context.sign(CONTEXT_SECRET, c.customer_id, c.api_key_id, time.time() + 60)
        payload, _, signature = good.partition(".")
        tampered_payload = gateway_context.sign(
            CONTEXT_SECRET, "cus_other", c.api_key_id, time.time() + 60
        ).partition(".")[0]
        cases = {
            "unsigned": payload,
            "empty signature": payload + ".",
            "wrong secret": gateway_context.sign(
                "other-secret", c.customer_id, c.api_key_id, time.time() + 60
            ),
            "tampered payload": f"{tampered_payload}.{signature}",
            "tampered signature": f"{payload}.{signature[:-2]}AA",
            "expired": gateway_context.sign(
                CONTEXT_SECRET, c.customer_id, c.api_key_id, time.time() - 1
            ),
            "garbage": "%%%.###",
            "unknown key": gateway_context.sign(
                CONTEXT_SECRET, c.customer_id, "key_missing", time.time() + 60
            ),
        }
        for name, header in cases.items():
            response = await fronted_http.get(
                "/users/me", headers={"X-Gateway-Context": header, "X-API-Key": c.api_key}
            )
            assert response.status_code == 401, name
            assert response.json()["detail"]["code"] == "UNAUTHENTICATED_CONTEXT", name

    async def test_context_ignored_when_not_fronted(
        self, http: httpx.AsyncClient, customer: api_keys.CreatedKey
    ) -> None:
        forged = gateway_context.sign(
            CONTEXT_SECRET, customer.customer_id, customer.api_key_id, time.time() + 60
        )
        alone = await http.get("/users/me", headers={"X-Gateway-Context": forged})
        assert alone.status_code == 401
        assert alone.json()["detail"]["code"] == "UNAUTHENTICATED_KEY"
