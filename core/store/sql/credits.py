"""The credit ledger: reservations and the customer's running usage, moved together.

Each statement moves a reservation out of `open` and adjusts `current_usage` in one go,
so a reservation settles exactly once even when two settlements race.
"""

ROLL_PERIOD = """
UPDATE customers SET
    current_usage = (SELECT coalesce(sum(amount), 0) FROM credit_reservations
                     WHERE customer_id = $1 AND status = 'open'),
    period_start = date_trunc('month', now())
WHERE customer_id = $1 AND period_start < date_trunc('month', now())
"""

# Usage at the start of this month's window: open holds after a roll-over, else as stored.
# Read from the locked row itself (never from a CTE snapshot), so concurrent settlements
# are not lost.
_BASE = """(CASE WHEN c.period_start < date_trunc('month', now())
          THEN (SELECT coalesce(sum(amount), 0) FROM credit_reservations
                WHERE customer_id = $1 AND status = 'open')
          ELSE c.current_usage END)"""

# One statement: roll a stale monthly window (usage := open holds) and add the hold,
# only if the result stays within quota.
RESERVE = (
    """
WITH charged AS (
    UPDATE customers c SET current_usage = """
    + _BASE
    + """ + $2,
                           period_start = greatest(c.period_start, date_trunc('month', now()))
    WHERE c.customer_id = $1 AND """
    + _BASE
    + """ + $2 <= c.quota_limit
    RETURNING c.customer_id
)
INSERT INTO credit_reservations (reservation_id, customer_id, call_id, amount)
SELECT $3, customer_id, $4, $2 FROM charged
RETURNING reservation_id
"""
)

RESERVATION_OWNER = "SELECT customer_id FROM credit_reservations WHERE reservation_id = $1"

CAPTURE = """
WITH settled AS (
    UPDATE credit_reservations
    SET status = 'captured', captured_amount = LEAST($2::bigint, amount), settled_at = now()
    WHERE reservation_id = $1 AND status = 'open'
    RETURNING customer_id, amount, captured_amount
)
UPDATE customers c SET current_usage = c.current_usage - (s.amount - s.captured_amount)
FROM settled s WHERE c.customer_id = s.customer_id
RETURNING s.captured_amount
"""

RELEASE = """
WITH settled AS (
    UPDATE credit_reservations SET status = 'released', settled_at = now()
    WHERE reservation_id = $1 AND status = 'open'
    RETURNING customer_id, amount
)
UPDATE customers c SET current_usage = c.current_usage - s.amount
FROM settled s WHERE c.customer_id = s.customer_id
RETURNING s.amount
"""

# Open holds of calls that already ended (a crash between the two): $1 terminal statuses.
ORPHANED_RESERVATIONS = """
SELECT r.reservation_id, r.call_id, c.status FROM credit_reservations r
JOIN calls c USING (call_id)
WHERE r.status = 'open' AND c.status = ANY($1::text[])
"""
