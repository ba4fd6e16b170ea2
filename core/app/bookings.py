"""Bookings made by calls; read-only through the API, written when a call's outcome lands.

Which outcome makes which booking is a domain rule (`core.domain.bookings`); this module
reads and writes the rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from core.domain import bookings as rules
from core.domain.errors import CallagentError, not_found
from core.store.database import Conn
from core.store.sql import bookings as sql

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


async def list_for(
    conn: asyncpg.Pool[Any] | Conn,
    customer_id: str,
    status: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    status = rules.check_status(status)
    limit = limit or DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise CallagentError("INVALID_ARGUMENT_LIMIT", f"limit must be between 1 and {MAX_LIMIT}")
    return await conn.fetch(sql.LIST_FOR_CUSTOMER, customer_id, status, limit)


async def get_for(
    conn: asyncpg.Pool[Any] | Conn, customer_id: str, booking_id: str
) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(sql.GET_FOR_CUSTOMER, booking_id, customer_id)
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
    if type not in rules.TYPES:
        raise ValueError(f"unknown booking type {type!r}")
    rules.check_status(status)
    booking_id = str(uuid.uuid4())
    await conn.execute(
        sql.INSERT,
        booking_id,
        customer_id,
        call_id,
        type,
        target_phone,
        venue_name,
        rules.stored_date(booking_date),
        guests,
        booking_holder_name,
        contact_phone,
        details,
        status,
        language,
        refusal_reason,
    )
    return booking_id
