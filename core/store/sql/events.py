"""Call events: the durable log, and the NOTIFY that wakes live readers."""

LOCK_CALL = "SELECT 1 FROM calls WHERE call_id = $1 FOR UPDATE"

# Insert and NOTIFY "<call_id>:<event_id>" ($4 is the channel) in one statement.
APPEND = """
WITH e AS (INSERT INTO call_events (call_id, type, payload) VALUES ($1, $2, $3)
           RETURNING event_id)
SELECT e.event_id FROM e, pg_notify($4, $1 || ':' || e.event_id)
"""

READ_AFTER = """
SELECT event_id, call_id, type, payload, created_at FROM call_events
WHERE call_id = $1 AND event_id > $2 ORDER BY event_id LIMIT $3
"""

LAST_ID = "SELECT coalesce(max(event_id), 0) FROM call_events WHERE call_id = $1"

# Whether the call's outcome event is at or before $2 (a reader resuming past it).
OUTCOME_AT_OR_BEFORE = """
SELECT EXISTS (SELECT 1 FROM call_events
               WHERE call_id = $1 AND type = 'outcome' AND event_id <= $2)
"""
