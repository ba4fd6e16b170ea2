"""Bookings: the caller's list and one booking, the insert an outcome makes, a cancellation's
candidates and mark, and the move to `past` (updated_at is kept by a trigger: 0006)."""

_COLUMNS = """booking_id, customer_id, call_id, type, target_phone, venue_name, booking_date,
    guests, booking_holder_name, contact_phone, details, status, language, refusal_reason,
    created_at, updated_at, booking_local_time, venue_timezone"""

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

# $1 customer, $2 the statuses that age into `past`: bookings whose UTC time has gone by.
MARK_PAST = """
UPDATE bookings SET status = 'past'
WHERE customer_id = $1 AND status = ANY($2::text[]) AND booking_date < now() AT TIME ZONE 'UTC'
"""

INSERT = """
INSERT INTO bookings (booking_id, customer_id, call_id, type, target_phone, venue_name,
    booking_date, guests, booking_holder_name, contact_phone, details, status, language,
    refusal_reason, booking_local_time, venue_timezone)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
"""

# A cancellation's candidates: the customer's open bookings, newest first ($2 the statuses).
OPEN_FOR_CUSTOMER = (
    "SELECT "
    + _COLUMNS
    + """ FROM bookings WHERE customer_id = $1 AND status = ANY($2::text[])
    ORDER BY created_at DESC, booking_id DESC LIMIT 200 FOR UPDATE"""
)

CANCEL = "UPDATE bookings SET status = 'cancelled' WHERE booking_id = $1 AND customer_id = $2"
