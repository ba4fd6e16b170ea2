"""Idempotency keys: the record of a first attempt, claimed in the start transaction."""

# $3: seconds after which a running key's lock counts as stale.
READ = """
SELECT fingerprint, status, response, error_reason, error_message,
       locked_at < now() - make_interval(secs => $3) AS stale
FROM idempotency_keys WHERE customer_id = $1 AND key = $2 AND expires_at > now()
"""

# An expired row is taken over; a live one blocks on the primary key, then returns nothing.
CLAIM = """
INSERT INTO idempotency_keys (customer_id, key, fingerprint, status, expires_at)
VALUES ($1, $2, $3, 'running', now() + make_interval(secs => $4))
ON CONFLICT (customer_id, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, status = 'running', response = NULL,
        error_reason = NULL, error_message = NULL, call_id = NULL,
        locked_at = now(), created_at = now(), expires_at = EXCLUDED.expires_at
    WHERE idempotency_keys.expires_at <= now()
RETURNING true
"""

FINISH = """
UPDATE idempotency_keys SET status = 'done', call_id = $3, response = $4,
    error_reason = $5, error_message = $6
WHERE customer_id = $1 AND key = $2
"""

SWEEP = "DELETE FROM idempotency_keys WHERE expires_at <= now()"
