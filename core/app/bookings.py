"""Bookings made by calls; read-only through the API, written when a call's outcome lands."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from core.domain.errors import CallagentError, not_found
from core.store.database import Conn

STATUSES = ("active", "pending_user_confirm", "past", "cancelled")
TYPES = ("restaurant", "doctor", "hotel", "other")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100

_COLUMNS = """booking_id, customer_id, call_id, type, target_phone, venue_name, booking_date,
    guests, booking_holder_name, contact_phone, details, status, language, refusal_reason,
    created_at, updated_at"""


def check_status(status: str | None) -> str | None:
    if status in (None, ""):
        return None
    if status not in STATUSES:
        raise CallagentError(
            "INVALID_ARGUMENT_STATUS",
            f"unknown booking status {status!r}; allowed values: {', '.join(STATUSES)}",
        )
    return status


async def list_for(
    conn: asyncpg.Pool[Any] | Conn,
    customer_id: str,
    status: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    status = check_status(status)
    limit = limit or DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise CallagentError("INVALID_ARGUMENT_LIMIT", f"limit must be between 1 and {MAX_LIMIT}")
    return await conn.fetch(
        f"""SELECT {_COLUMNS} FROM bookings
            WHERE customer_id = $1 AND ($2::text IS NULL OR status = $2)
            ORDER BY created_at DESC, booking_id DESC LIMIT $3""",
        customer_id,
        status,
        limit,
    )


async def get_for(
    conn: asyncpg.Pool[Any] | Conn, customer_id: str, booking_id: str
) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM bookings WHERE booking_id = $1 AND customer_id = $2",
        booking_id,
        customer_id,
    )
    if row is None:
        raise not_found("booking")
    return row


async def create(
    conn: asyncpg.Pool[Any] | Conn,
    *,
    customer_id: str,
    call_id: str | None,
    type: str,
    target_phone: str,
    status: str,
    language: str,
    venue_name: str | None = None,
    booking_date: dt.datetime | None = None,
    guests: int | None = None,
    booking_holder_name: str | None = None,
    contact_phone: str | None = None,
    details: str | None = None,
    refusal_reason: str | None = None,
) -> str:
    """Insert a booking row; booking_date is stored as naive UTC."""
    if type not in TYPES:
        raise ValueError(f"unknown booking type {type!r}")
    check_status(status)
    if booking_date is not None and booking_date.tzinfo is not None:
        booking_date = booking_date.astimezone(dt.UTC).replace(tzinfo=None)
    booking_id = str(uuid.uuid4())
    await conn.execute(
        """INSERT INTO bookings (booking_id, customer_id, call_id, type, target_phone, venue_name,
               booking_date, guests, booking_holder_name, contact_phone, details, status, language,
               refusal_reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
        booking_id,
        customer_id,
        call_id,
        type,
        target_phone,
        venue_name,
        booking_date,
        guests,
        booking_holder_name,
        contact_phone,
        details,
        status,
        language,
        refusal_reason,
    )
    return booking_id
