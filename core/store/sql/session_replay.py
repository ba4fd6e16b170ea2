"""A media session's replay log and durable commands (migration 0009)."""

# The report (call_id, seq) is new: applied now, in the caller's transaction. No row: a replay.
CLAIM_REPORT = """
INSERT INTO session_reports (call_id, seq) VALUES ($1, $2)
ON CONFLICT DO NOTHING RETURNING seq
"""

REPORT_APPLIED = "SELECT 1 FROM session_reports WHERE call_id = $1 AND seq = $2"

INSERT_COMMAND = """
INSERT INTO session_commands (call_id, kind, request_id, reason, answered_by)
VALUES ($1, $2, $3, $4, $5) RETURNING command_id
"""

# What the session still owes media: every command it has not acknowledged.
OPEN_COMMANDS = """
SELECT command_id, kind, request_id, reason, answered_by FROM session_commands
WHERE call_id = $1 AND state <> 'acknowledged'
ORDER BY command_id
"""

MARK_DELIVERED = """
UPDATE session_commands SET state = 'delivered', delivered_at = now()
WHERE command_id = $1 AND state = 'pending'
"""

ACKNOWLEDGE = """
UPDATE session_commands SET state = 'acknowledged', acknowledged_at = now()
WHERE command_id = $1 AND call_id = $2 AND state <> 'acknowledged'
"""

# A call over for longer than $1 seconds: no session can replay to it any more (media keeps
# its replay log only while the call's bridge runs), so its log and commands go.
PRUNE_REPORTS = """
DELETE FROM session_reports r USING calls c
WHERE r.call_id = c.call_id AND c.ended_at < now() - make_interval(secs => $1)
"""

PRUNE_COMMANDS = """
DELETE FROM session_commands s USING calls c
WHERE s.call_id = c.call_id AND c.ended_at < now() - make_interval(secs => $1)
"""
