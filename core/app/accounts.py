"""The caller's own account: the MeDTO view, the ask_user webhook and the call cap."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from typing import Any

import asyncpg

from core.adapters import webhook_urls
from core.app import credits, maintenance
from core.app.auth import Principal
from core.domain.errors import CallagentError
from core.store.database import Conn
from core.store.sql import accounts as sql

MAX_CONCURRENT_CALLS_CEILING = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Me:
    api_key_id: str
    customer_id: str
    customer_name: str
    api_key_last_4: str | None
    status: str
    quota_limit: int
    current_usage: int
    quota_period: str
    ask_user_webhook_url: str | None
    max_concurrent_calls: int
    is_admin: bool
    maintenance: maintenance.Window


async def me(pool: asyncpg.Pool[Any], principal: Principal) -> Me:
    row = await pool.fetchrow(sql.ME, principal.customer_id, principal.api_key_id)
    if row is not None and row["period_stale"]:
        # First read in a new month: roll the quota window, then read again (rare path).
        await credits.roll_period(pool, principal.customer_id)
        row = await pool.fetchrow(sql.ME, principal.customer_id, principal.api_key_id)
    if row is None:
        raise CallagentError("UNAUTHENTICATED_KEY", "this API key no longer exists")
    return Me(
        api_key_id=row["api_key_id"],
        customer_id=row["customer_id"],
        customer_name=row["name"],
        api_key_last_4=row["last_4"],
        status=row["status"],
        quota_limit=row["quota_limit"],
        current_usage=row["current_usage"],
        quota_period=row["quota_period"],
        ask_user_webhook_url=row["ask_user_webhook_url"],
        max_concurrent_calls=row["max_concurrent_calls"],
        is_admin=row["is_admin"],
        maintenance=maintenance.Window(row["m_active"], row["m_message"], row["m_resume_at"]),
    )


async def set_webhook(
    pool: asyncpg.Pool[Any],
    principal: Principal,
    url: str,
    *,
    regenerate_secret: bool,
    allowed_hosts: Sequence[str],
) -> tuple[str, str | None]:
    """Store a checked HTTPS webhook URL; return (url, new secret or None).

    A secret is issued when asked to, or when none exists yet (nothing could be signed).
    """
    url = await webhook_urls.check(url.strip(), allowed_hosts)
    new_secret = "whsec_" + secrets.token_urlsafe(32)
    row = await pool.fetchrow(
        sql.SET_WEBHOOK,
        principal.customer_id,
        url,
        regenerate_secret,
        new_secret,
    )
    assert row is not None
    return url, new_secret if row["rotated"] else None


async def clear_webhook(pool: asyncpg.Pool[Any], principal: Principal) -> None:
    await pool.execute(
        sql.CLEAR_WEBHOOK,
        principal.customer_id,
    )


async def ask_user_channels(pool: asyncpg.Pool[Any], customer_id: str) -> bool:
    """Whether the customer has somewhere besides the event stream to send questions."""
    row = await pool.fetchrow(sql.ASK_USER_CHANNELS, customer_id)
    return row is not None and bool(row["ask_user_webhook_url"] or row["telegram_chat_id"])


async def set_limits(pool: asyncpg.Pool[Any], principal: Principal, max_concurrent: int) -> int:
    if not 1 <= max_concurrent <= MAX_CONCURRENT_CALLS_CEILING:
        raise CallagentError(
            "INVALID_ARGUMENT_LIMIT",
            f"max_concurrent_calls must be between 1 and {MAX_CONCURRENT_CALLS_CEILING}",
        )
    await pool.execute(
        sql.SET_LIMITS,
        principal.customer_id,
        max_concurrent,
    )
    return max_concurrent


async def customer_named(conn: Conn, name: str) -> str | None:
    """The id of the customer with this name, if there is one (operator commands)."""
    found = await conn.fetchval(sql.CUSTOMER_NAMED, name)
    return None if found is None else str(found)


async def link_telegram(conn: Conn, name: str, chat_id: int | None) -> str:
    """Send a customer's ask_user questions to a Telegram chat (None unlinks).

    Raises:
        CallagentError: NOT_FOUND when no customer has this name.
    """
    found = await conn.fetchval(sql.LINK_TELEGRAM, name, chat_id)
    if found is None:
        raise CallagentError("NOT_FOUND", f"no customer named {name!r}")
    return str(found)
