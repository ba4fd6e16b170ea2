"""Who is calling: an X-API-Key, or an X-Gateway-Context signed by an upstream gateway.

The context (only honoured when GATEWAY_FRONTED=1) is checked by the pure rules in
`core.domain.gateway_context`. A present but bad context is always a 401; it never
falls back to anything weaker. Resolved principals are cached for AUTH_CACHE_TTL_SEC
so the hot path costs no query.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import asyncpg

from core.app import api_keys
from core.domain import gateway_context
from core.domain.errors import CallagentError
from core.store.sql import accounts as sql

API_KEY_HEADER = "x-api-key"
CONTEXT_HEADER = "x-gateway-context"


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    customer_id: str
    api_key_id: str
    is_admin: bool


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
                raise gateway_context.rejected("this service has no GATEWAY_CONTEXT_SECRET")
            customer_id, key_id = gateway_context.verify(self._secret, context, time.time())
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
        row = await self._pool.fetchrow(sql.KEY_BY_HASH, digest)
        if row is None:
            raise CallagentError("UNAUTHENTICATED_KEY", "unknown or revoked API key")
        return Principal(row["customer_id"], row["api_key_id"], row["is_admin"])

    async def _by_key_id(self, ids: tuple[str, str]) -> Principal:
        customer_id, key_id = ids
        row = await self._pool.fetchrow(sql.KEY_BY_ID, key_id, customer_id)
        if row is None:
            raise gateway_context.rejected("unknown or revoked key")
        return Principal(customer_id, key_id, row["is_admin"])
