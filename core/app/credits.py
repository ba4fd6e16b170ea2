"""The credit ledger: reserve before a call, then capture the real charge or release.

Invariant (tested under concurrency): for every customer,
    current_usage = sum(open reservation amounts)
                  + sum(captured amounts settled since period_start).
Each operation is one SQL statement that moves a reservation out of `open` and
adjusts `current_usage` together, so a reservation settles exactly once even when
two settlements race (the loser finds no open row and changes nothing).
The quota window is monthly: the first operation in a new month rolls it over.
"""

from __future__ import annotations

from core.app.api_keys import new_id
from core.domain.errors import CallagentError
from core.store.database import Conn

ROLL_PERIOD = """
UPDATE customers SET
    current_usage = (SELECT coalesce(sum(amount), 0) FROM credit_reservations
                     WHERE customer_id = $1 AND status = 'open'),
    period_start = date_trunc('month', now())
WHERE customer_id = $1 AND period_start < date_trunc('month', now())
"""

# One statement: roll a stale monthly window (usage := open holds) and add the hold,
# only if the result stays within quota. Usage is read from the locked row itself
# (never from a CTE snapshot), so concurrent settlements are not lost.
_BASE = """(CASE WHEN c.period_start < date_trunc('month', now())
          THEN (SELECT coalesce(sum(amount), 0) FROM credit_reservations
                WHERE customer_id = $1 AND status = 'open')
          ELSE c.current_usage END)"""
_RESERVE = f"""
WITH charged AS (
    UPDATE customers c SET current_usage = {_BASE} + $2,
                           period_start = greatest(c.period_start, date_trunc('month', now()))
    WHERE c.customer_id = $1 AND {_BASE} + $2 <= c.quota_limit
    RETURNING c.customer_id
)
INSERT INTO credit_reservations (reservation_id, customer_id, call_id, amount)
SELECT $3, customer_id, $4, $2 FROM charged
RETURNING reservation_id
"""

_CAPTURE = """
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

_RELEASE = """
WITH settled AS (
    UPDATE credit_reservations SET status = 'released', settled_at = now()
    WHERE reservation_id = $1 AND status = 'open'
    RETURNING customer_id, amount
)
UPDATE customers c SET current_usage = c.current_usage - s.amount
FROM settled s WHERE c.customer_id = s.customer_id
RETURNING s.amount
"""


async def reserve(conn: Conn, customer_id: str, amount: int, call_id: str | None = None) -> str:
    """Hold `amount` credits; return the reservation id.

    Raises:
        CallagentError: QUOTA_EXCEEDED when the hold would pass quota_limit.
    """
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    reservation_id = await conn.fetchval(_RESERVE, customer_id, amount, new_id("res"), call_id)
    if reservation_id is None:
        raise CallagentError(
            "QUOTA_EXCEEDED",
            f"not enough credits: reserving {amount} would exceed this month's quota",
        )
    return str(reservation_id)


async def capture(conn: Conn, reservation_id: str, charge: int) -> int | None:
    """Settle with the real charge (capped by the reservation); None if already settled."""
    if charge < 0:
        raise ValueError("a charge cannot be negative")
    async with conn.transaction():
        customer_id = await conn.fetchval(
            "SELECT customer_id FROM credit_reservations WHERE reservation_id = $1", reservation_id
        )
        if customer_id is None:
            return None
        await conn.execute(ROLL_PERIOD, customer_id)
        captured = await conn.fetchval(_CAPTURE, reservation_id, charge)
    return None if captured is None else int(captured)


async def release(conn: Conn, reservation_id: str) -> bool:
    """Give the whole hold back; False if it was already settled."""
    amount = await conn.fetchval(_RELEASE, reservation_id)
    return amount is not None
