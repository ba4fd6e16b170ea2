"""Customers and their API keys: the account view, webhook and cap, key lookups."""

ME = """
SELECT k.api_key_id, k.last_4, k.is_admin, c.customer_id, c.name, c.status, c.quota_limit,
       c.current_usage, c.period_start < date_trunc('month', now()) AS period_stale,
       c.quota_period, c.ask_user_webhook_url, c.max_concurrent_calls,
       m.active AS m_active, m.message AS m_message, m.resume_at AS m_resume_at
FROM api_keys k JOIN customers c USING (customer_id), maintenance m
WHERE k.api_key_id = $2 AND c.customer_id = $1 AND m.id = 1
"""

# $3 asks for a new secret; one is also issued when none exists yet.
SET_WEBHOOK = """
UPDATE customers SET ask_user_webhook_url = $2,
    ask_user_webhook_secret = CASE
        WHEN $3 OR ask_user_webhook_secret IS NULL THEN $4
        ELSE ask_user_webhook_secret END
WHERE customer_id = $1
RETURNING ask_user_webhook_secret = $4 AS rotated
"""

CLEAR_WEBHOOK = """
UPDATE customers SET ask_user_webhook_url = NULL, ask_user_webhook_secret = NULL
WHERE customer_id = $1
"""

SET_LIMITS = "UPDATE customers SET max_concurrent_calls = $2 WHERE customer_id = $1"

ASK_USER_CHANNELS = """
SELECT ask_user_webhook_url, telegram_chat_id FROM customers WHERE customer_id = $1
"""

KEY_BY_HASH = """
SELECT api_key_id, customer_id, is_admin FROM api_keys
WHERE key_hash = $1 AND revoked_at IS NULL
"""

KEY_BY_ID = """
SELECT is_admin FROM api_keys
WHERE api_key_id = $1 AND customer_id = $2 AND revoked_at IS NULL
"""

# A new name makes a customer; an existing one is returned unchanged (quota untouched).
UPSERT_CUSTOMER = """
INSERT INTO customers (customer_id, name, quota_limit) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING customer_id
"""

INSERT_KEY = """
INSERT INTO api_keys (api_key_id, customer_id, key_hash, last_4, is_admin, is_bootstrap)
VALUES ($1, $2, $3, $4, $5, $6)
"""

LOCK_BOOTSTRAP = "SELECT pg_advisory_xact_lock(hashtext('bootstrap-admin-key'))"

REVOKE_OTHER_BOOTSTRAP_KEYS = """
UPDATE api_keys SET revoked_at = now()
WHERE is_bootstrap AND revoked_at IS NULL AND key_hash IS DISTINCT FROM $1
"""

LIVE_KEY_EXISTS = "SELECT 1 FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"

DELETE_KEY = "DELETE FROM api_keys WHERE key_hash = $1"

CUSTOMER_NAMED = "SELECT customer_id FROM customers WHERE name = $1"

LINK_TELEGRAM = """
UPDATE customers SET telegram_chat_id = $2 WHERE name = $1 RETURNING customer_id
"""
