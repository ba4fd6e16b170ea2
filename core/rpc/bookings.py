"""BookingService: read-only access to the caller's bookings."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import grpc
from callagent.v1 import bookings_pb2, bookings_pb2_grpc

from core.app import bookings
from core.rpc.convert import ts
from core.rpc.interceptor import current_principal

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def booking_message(row: asyncpg.Record) -> bookings_pb2.Booking:
    local = row["booking_local_time"]
    return bookings_pb2.Booking(
        booking_id=row["booking_id"],
        customer_id=row["customer_id"],
        call_id=row["call_id"] or None,
        type=row["type"],
        target_phone=row["target_phone"],
        venue_name=row["venue_name"],
        booking_date=ts(row["booking_date"]),
        guests=row["guests"],
        booking_holder_name=row["booking_holder_name"],
        contact_phone=row["contact_phone"],
        details=row["details"],
        status=row["status"],
        language=row["language"],
        refusal_reason=row["refusal_reason"],
        created_at=ts(row["created_at"]),
        updated_at=ts(row["updated_at"]),
        booking_local_time=local.isoformat() if local is not None else None,
        venue_timezone=row["venue_timezone"],
    )


class BookingServicer(bookings_pb2_grpc.BookingServiceServicer):
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def ListBookings(self, request: bookings_pb2.ListBookingsRequest, context: Ctx) -> Any:
        rows = await bookings.list_for(
            self._pool, current_principal().customer_id, request.status, request.limit
        )
        return bookings_pb2.ListBookingsResponse(bookings=[booking_message(r) for r in rows])

    async def GetBooking(self, request: bookings_pb2.GetBookingRequest, context: Ctx) -> Any:
        row = await bookings.get_for(
            self._pool, current_principal().customer_id, request.booking_id
        )
        return bookings_pb2.GetBookingResponse(booking=booking_message(row))
