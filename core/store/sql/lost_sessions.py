"""Media sessions that ended before their call: marked, then hung up and settled."""

# The session of attach number $2 ended: remember when, unless the call moved on (a newer
# attach bumped the sequence, or the call is over).
MARK_LOST = """
UPDATE calls SET session_lost_at = now()
WHERE call_id = $1 AND media_session_seq = $2 AND NOT (status = ANY($3::text[]))
"""

# Calls whose session has been lost for longer than the grace ($1 seconds).
DUE = """
SELECT call_id FROM calls
WHERE session_lost_at IS NOT NULL AND session_lost_at <= now() - make_interval(secs => $1)
"""

# Claim one due call (row-locked, so racing replicas settle it once) and clear the mark.
CLAIM = """
UPDATE calls c SET session_lost_at = NULL
FROM (
    SELECT call_id FROM calls
    WHERE call_id = $1 AND session_lost_at IS NOT NULL
      AND session_lost_at <= now() - make_interval(secs => $2)
    FOR UPDATE
) due
WHERE c.call_id = due.call_id
RETURNING c.status, c.call_sid, c.owner_pod, c.outcome IS NOT NULL AS reported,
    c.carrier_ended_at IS NOT NULL AS carrier_ended
"""
