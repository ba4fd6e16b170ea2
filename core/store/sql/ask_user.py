"""ask_user questions: stored per call, routed, answered once, timed out, matched to Telegram."""

LOCK_CALL_AND_ROUTING = """
SELECT c.status, c.target_phone, t.brief, t.parsed_slots, t.ask_user_mode,
       cu.ask_user_webhook_url, cu.ask_user_webhook_secret, cu.telegram_chat_id
FROM calls c JOIN tasks t USING (task_id)
JOIN customers cu ON cu.customer_id = c.customer_id
WHERE c.call_id = $1 FOR UPDATE OF c
"""

# Returns the question's expires_at (the stored one when the id was asked before).
INSERT = """
WITH ins AS (
    INSERT INTO ask_user_requests (request_id, call_id, question, options, expires_at)
    VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
    ON CONFLICT (request_id) DO NOTHING RETURNING expires_at)
SELECT expires_at FROM ins
UNION ALL SELECT expires_at FROM ask_user_requests WHERE request_id = $1
LIMIT 1
"""

SET_CHANNEL = "UPDATE ask_user_requests SET channel = $2 WHERE request_id = $1"

SET_TELEGRAM_MESSAGE = """
UPDATE ask_user_requests SET telegram_chat_id = $2, telegram_message_id = $3
WHERE request_id = $1
"""

LOCK_CALL = "SELECT customer_id, status FROM calls WHERE call_id = $1 FOR UPDATE"

# The first answer wins: the oldest live pending question (or the one named by $2).
ANSWER = """
UPDATE ask_user_requests SET status = 'answered', answer = $3, mode = $4, answered_via = $5,
    answered_at = now()
WHERE request_id = (
    SELECT request_id FROM ask_user_requests
    WHERE call_id = $1 AND status = 'pending' AND expires_at > now()
      AND ($2::text IS NULL OR request_id = $2)
    ORDER BY created_at LIMIT 1)
RETURNING request_id, extract(epoch FROM answered_at - created_at)::float8 AS waited_sec
"""

# The call's media session ended: nobody waits for its pending questions any more.
CANCEL_PENDING = """
UPDATE ask_user_requests SET status = 'cancelled'
WHERE call_id = $1 AND status = 'pending' RETURNING request_id
"""

EXPIRE = """
UPDATE ask_user_requests SET status = 'timed_out'
WHERE request_id = $1 AND status = 'pending' RETURNING call_id
"""

ANSWER_OF = """
SELECT request_id, answer, mode, status FROM ask_user_requests WHERE request_id = $1
"""

# A Telegram reply: by request id (a button), else by the replied-to message.
BY_TELEGRAM_MESSAGE = """
SELECT request_id, call_id, options FROM ask_user_requests
WHERE telegram_chat_id = $1
  AND (request_id = $2 OR ($2::text IS NULL AND telegram_message_id = $3))
"""

# Questions still open when a session (re-)attaches: their timeouts are timed again.
PENDING_OF_CALL = """
SELECT request_id, greatest(extract(epoch FROM expires_at - now()), 0)::float8 AS left_sec
FROM ask_user_requests WHERE call_id = $1 AND status = 'pending' ORDER BY created_at
"""
