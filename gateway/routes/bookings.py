"""`/v1/booking/bookings*`: the bookings the caller's calls made, from core's BookingService.

Read-only: bookings are written by core when a call's outcome names one.
"""

from __future__ import annotations

from typing import Annotated

from callagent.v1 import bookings_pb2
from fastapi import APIRouter, Query
from fastapi.responses import Response

from gateway import schemas, views
from gateway.credentials import Creds
from gateway.responses import JsonResponse
from gateway.stubs import Core

router = APIRouter(tags=["bookings"])


@router.get(
    "/v1/booking/bookings",
    summary="List the customer's bookings (most recent first)",
    response_model=list[schemas.BookingDTO],
)
async def list_bookings(
    creds: Creds,
    core: Core,
    status: Annotated[
        str | None,
        Query(
            description="Filter by booking status. One of: active, pending_user_confirm, "
            "past, cancelled. Omit to return bookings regardless of status."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    reply = await core.bookings.ListBookings(
        bookings_pb2.ListBookingsRequest(status=status or "", limit=limit), metadata=creds
    )
    return JsonResponse([views.booking(b) for b in reply.bookings])


@router.get(
    "/v1/booking/bookings/{booking_id}",
    summary="Get a single booking by id",
    response_model=schemas.BookingDTO,
)
async def get_booking(booking_id: str, creds: Creds, core: Core) -> Response:
    reply = await core.bookings.GetBooking(
        bookings_pb2.GetBookingRequest(booking_id=booking_id), metadata=creds
    )
    return JsonResponse(views.booking(reply.booking))
