"""Bookings made by calls; read-only through the API, written when a call's outcome lands.

Which outcome makes which booking, and which booking a cancellation cancels, are domain
rules (`core.domain.bookings`); this module reads and writes the rows. `past` is applied
when bookings are read: an open booking whose UTC time has gone by is moved to `past`
(persisted, so updated_at moves) just before the read, so a read never shows a stale status.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from core.domain import booking_time
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
    await mark_past(conn, customer_id)
    return await conn.fetch(sql.LIST_FOR_CUSTOMER, customer_id, status, limit)


async def get_for(
    conn: asyncpg.Pool[Any] | Conn, customer_id: str, booking_id: str
) -> asyncpg.Record:
    await mark_past(conn, customer_id)
    row: asyncpg.Record | None = await conn.fetchrow(sql.GET_FOR_CUSTOMER, booking_id, customer_id)
    if row is None:
        raise not_found("booking")
    return row


async def mark_past(conn: asyncpg.Pool[Any] | Conn, customer_id: str) -> None:
    """Open bookings of this customer whose time has gone by become `past`."""
    await conn.execute(sql.MARK_PAST, customer_id, list(rules.OPEN_STATUSES))


async def cancel_matching(conn: Conn, customer_id: str, request: rules.CancelRequest) -> str | None:
    """Mark the booking a successful cancellation names `cancelled`; return its id, if any."""
    candidates = await conn.fetch(sql.OPEN_FOR_CUSTOMER, customer_id, list(rules.OPEN_STATUSES))
    booking_id = rules.cancellation_target([dict(c) for c in candidates], request)
    if booking_id is not None:
        await conn.execute(sql.CANCEL, booking_id, customer_id)
    return booking_id


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
    when: booking_time.BookingTime | None = None,
    guests: int | None = None,
    booking_holder_name: str | None = None,
    contact_phone: str | None = None,
    details: str | None = None,
    refusal_reason: str | None = None,
) -> str:
    """Insert a booking row: `when` gives booking_date (naive UTC), the local time and zone."""
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
        when.utc if when else None,
        guests,
        booking_holder_name,
        contact_phone,
        details,
        status,
        language,
        refusal_reason,
        when.local if when else None,
        when.zone if when else None,
    )
    return booking_id
