"""Bookings: the caller's list and one booking, and the insert an outcome makes."""

_COLUMNS = """booking_id, customer_id, call_id, type, target_phone, venue_name, booking_date,
    guests, booking_holder_name, contact_phone, details, status, language, refusal_reason,
    created_at, updated_at"""

LIST_FOR_CUSTOMER = (
    "SELECT "
    + _COLUMNS
    + """ FROM bookings
    WHERE customer_id = $1 AND ($2::text IS NULL OR status = $2)
    ORDER BY created_at DESC, booking_id DESC LIMIT $3"""
)

GET_FOR_CUSTOMER = (
    "SELECT " + _COLUMNS + " FROM bookings WHERE booking_id = $1 AND customer_id = $2"
)

INSERT = """
INSERT INTO bookings (booking_id, customer_id, call_id, type, target_phone, venue_name,
    booking_date, guests, booking_holder_name, contact_phone, details, status, language,
    refusal_reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
"""
