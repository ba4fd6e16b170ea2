"""API keys: made once, shown once, stored only as a SHA-256 hash plus the last 4 chars.

Keys are 256-bit random tokens, so a plain (unsalted) SHA-256 is the right hash:
a lookup by hash is one indexed equality, and no dictionary attack applies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets

from core.store.database import Conn
from core.store.sql import accounts as sql

KEY_PREFIX = "ck_"
BOOTSTRAP_CUSTOMER = "bootstrap-admin"


def hash_key(plain: str) -> bytes:
    return hashlib.sha256(plain.encode()).digest()


def new_id(prefix: str) -> str:
    """A random, URL-safe identifier with a readable type prefix."""
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclasses.dataclass(frozen=True, slots=True)
class CreatedKey:
    customer_id: str
    api_key_id: str
    api_key: str  # the only time the plain key exists outside the client


async def create_key(
    conn: Conn,
    customer_name: str,
    *,
    is_admin: bool = False,
    quota_limit: int,
    is_bootstrap: bool = False,
    plain_key: str | None = None,
) -> CreatedKey:
    """Create the customer if new (quota applies only then) and a key for it."""
    plain = plain_key or KEY_PREFIX + secrets.token_urlsafe(32)
    async with conn.transaction():
        customer_id = await conn.fetchval(
            sql.UPSERT_CUSTOMER,
            new_id("cus"),
            customer_name,
            quota_limit,
        )
        key_id = new_id("key")
        await conn.execute(
            sql.INSERT_KEY,
            key_id,
            customer_id,
            hash_key(plain),
            plain[-4:],
            is_admin,
            is_bootstrap,
        )
    return CreatedKey(customer_id=customer_id, api_key_id=key_id, api_key=plain)


async def sync_bootstrap_key(conn: Conn, plain: str | None, quota_limit: int) -> None:
    """Make BOOTSTRAP_ADMIN_API_KEY the one live bootstrap key (revoke any earlier one)."""
    async with conn.transaction():
        await conn.execute(sql.LOCK_BOOTSTRAP)
        digest = hash_key(plain) if plain else None
        await conn.execute(
            sql.REVOKE_OTHER_BOOTSTRAP_KEYS,
            digest,
        )
        if plain is None:
            return
        exists = await conn.fetchval(sql.LIVE_KEY_EXISTS, digest)
        if not exists:
            await conn.execute(sql.DELETE_KEY, digest)
            await create_key(
                conn,
                BOOTSTRAP_CUSTOMER,
                is_admin=True,
                quota_limit=quota_limit,
                is_bootstrap=True,
                plain_key=plain,
            )
