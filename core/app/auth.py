"""Who is calling: an X-API-Key, or an X-Gateway-Context signed by an upstream gateway.

The context (only honoured when GATEWAY_FRONTED=1) is `<payload>.<signature>`:
payload = base64url(JSON {"customer_id", "api_key_id", "exp"}), signature =
base64url(HMAC-SHA256(GATEWAY_CONTEXT_SECRET, payload)). A present but bad context
is always a 401; it never falls back to anything weaker. Resolved principals are
cached for AUTH_CACHE_TTL_SEC so the hot path costs no query.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson

from core.app import api_keys
from core.domain.errors import CallagentError

API_KEY_HEADER = "x-api-key"
CONTEXT_HEADER = "x-gateway-context"


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    customer_id: str
    api_key_id: str
    is_admin: bool


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_gateway_context(secret: str, customer_id: str, api_key_id: str, exp: float) -> str:
    """What an upstream gateway puts in X-Gateway-Context (also used by tests)."""
    payload = _b64(orjson.dumps({"customer_id": customer_id, "api_key_id": api_key_id, "exp": exp}))
    signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


def _bad_context(why: str) -> CallagentError:
    return CallagentError("UNAUTHENTICATED_CONTEXT", f"X-Gateway-Context rejected: {why}")


def verify_gateway_context(secret: str, header: str, now: float) -> tuple[str, str]:
    """Return (customer_id, api_key_id) of a valid context, else raise UNAUTHENTICATED_CONTEXT."""
    payload, dot, signature = header.partition(".")
    if not dot or not payload or not signature:
        raise _bad_context("not <payload>.<signature>")
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
        claims = orjson.loads(_unb64(payload))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise _bad_context("not base64url JSON") from None
    if not hmac.compare_digest(expected, given):
        raise _bad_context("bad signature")
    if not isinstance(claims, dict):
        raise _bad_context("payload is not an object")
    customer_id, key_id, exp = (
        claims.get("customer_id"),
        claims.get("api_key_id"),
        claims.get("exp"),
    )
    if not isinstance(customer_id, str) or not isinstance(key_id, str):
        raise _bad_context("missing customer_id or api_key_id")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= now:
        raise _bad_context("expired")
    return customer_id, key_id


class Authenticator:
    """Resolves request metadata to a Principal, or raises a 401-class CallagentError."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        *,
        gateway_fronted: bool,
        context_secret: str | None,
        cache_ttl: float,
    ) -> None:
        self._pool = pool
        self._fronted = gateway_fronted
        self._secret = context_secret
        self._ttl = cache_ttl
        self._cache: dict[bytes | tuple[str, str], tuple[float, Principal]] = {}

    async def authenticate(self, metadata: Mapping[str, str]) -> Principal:
        context = metadata.get(CONTEXT_HEADER)
        if self._fronted and context is not None:
            if not self._secret:
                raise _bad_context("this service has no GATEWAY_CONTEXT_SECRET")
            customer_id, key_id = verify_gateway_context(self._secret, context, time.time())
            return await self._cached((customer_id, key_id), self._by_key_id)
        key = metadata.get(API_KEY_HEADER)
        if not key:
            raise CallagentError("UNAUTHENTICATED_KEY", "missing X-API-Key header")
        return await self._cached(api_keys.hash_key(key), self._by_hash)

    async def _cached(self, cache_key: Any, load: Any) -> Principal:
        now = time.monotonic()
        hit = self._cache.get(cache_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal: Principal = await load(cache_key)
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[cache_key] = (now + self._ttl, principal)
        return principal

    async def _by_hash(self, digest: bytes) -> Principal:
        row = await self._pool.fetchrow(
            """SELECT api_key_id, customer_id, is_admin FROM api_keys
               WHERE key_hash = $1 AND revoked_at IS NULL""",
            digest,
        )
        if row is None:
            raise CallagentError("UNAUTHENTICATED_KEY", "unknown or revoked API key")
        return Principal(row["customer_id"], row["api_key_id"], row["is_admin"])

    async def _by_key_id(self, ids: tuple[str, str]) -> Principal:
        customer_id, key_id = ids
        row = await self._pool.fetchrow(
            """SELECT is_admin FROM api_keys
               WHERE api_key_id = $1 AND customer_id = $2 AND revoked_at IS NULL""",
            key_id,
            customer_id,
        )
        if row is None:
            raise _bad_context("unknown or revoked key")
        return Principal(customer_id, key_id, row["is_admin"])
