"""API keys: made once, shown once, stored only as a SHA-256 hash plus the last 4 chars.

Keys are 256-bit random tokens, so a plain (unsalted) SHA-256 is the right hash:
a lookup by hash is one indexed equality, and no dictionary attack applies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets

from core.store.database import Conn

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
            """INSERT INTO customers (customer_id, name, quota_limit) VALUES ($1, $2, $3)
               ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
               RETURNING customer_id""",
            new_id("cus"),
            customer_name,
            quota_limit,
        )
        key_id = new_id("key")
        await conn.execute(
            """INSERT INTO api_keys
                   (api_key_id, customer_id, key_hash, last_4, is_admin, is_bootstrap)
               VALUES ($1, $2, $3, $4, $5, $6)""",
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
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('bootstrap-admin-key'))")
        digest = hash_key(plain) if plain else None
        await conn.execute(
            """UPDATE api_keys SET revoked_at = now()
               WHERE is_bootstrap AND revoked_at IS NULL AND key_hash IS DISTINCT FROM $1""",
            digest,
        )
        if plain is None:
            return
        exists = await conn.fetchval(
            "SELECT 1 FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", digest
        )
        if not exists:
            await conn.execute("DELETE FROM api_keys WHERE key_hash = $1", digest)
            await create_key(
                conn,
                BOOTSTRAP_CUSTOMER,
                is_admin=True,
                quota_limit=quota_limit,
                is_bootstrap=True,
                plain_key=plain,
            )
