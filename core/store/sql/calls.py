"""Calls and their tasks: start, reads, status changes, carrier facts, what media reports."""

# The columns of the public Call view; DETAIL_COLUMNS adds the heavy ones of GET /calls/{id}.
CALL_COLUMNS = """c.call_id, c.customer_id, c.task_id, c.target_phone, c.language, c.status,
    c.call_sid, c.owner_pod, c.credits_reserved, c.started_at, c.ended_at, c.duration_sec,
    c.outcome_type, c.outcome_summary, c.outcome_charge_cents, c.created_at,
    c.recording_sid IS NOT NULL AS has_recording, c.reservation_signals"""
# `usage` is the call's call_usage row as jsonb (NULL before media reported any).
DETAIL_COLUMNS = CALL_COLUMNS + ", c.transcript_full, c.supervisor_decisions, to_jsonb(u) AS usage"
DETAIL_FROM = " FROM calls c LEFT JOIN call_usage u USING (call_id)"

GET = "SELECT " + CALL_COLUMNS + " FROM calls c WHERE c.call_id = $1"

GET_DETAILED = "SELECT " + DETAIL_COLUMNS + DETAIL_FROM + " WHERE c.call_id = $1"

GET_DETAILED_FOR_CUSTOMER = (
    "SELECT " + DETAIL_COLUMNS + DETAIL_FROM + " WHERE c.call_id = $1 AND c.customer_id = $2"
)

# What the merged transcript is built from; another customer's call reads as missing.
MERGE_INPUT_FOR_CUSTOMER = """
SELECT status, duration_sec, transcript_full FROM calls WHERE call_id = $1 AND customer_id = $2
"""

LIST_FOR_CUSTOMER = (
    "SELECT "
    + CALL_COLUMNS
    + """ FROM calls c
    WHERE c.customer_id = $1 AND ($2::timestamptz IS NULL OR c.created_at >= $2)
    ORDER BY c.created_at DESC, c.call_id DESC LIMIT $3"""
)

# $2: the statuses counted against max_concurrent_calls.
COUNT_IN_FLIGHT = """
SELECT count(*) FROM calls WHERE customer_id = $1 AND status = ANY($2::text[])
"""

# Locks the customer so the concurrency cap holds under simultaneous starts.
LOCK_CUSTOMER_FOR_START = """
SELECT c.max_concurrent_calls, m.active, m.message, m.resume_at
FROM customers c CROSS JOIN maintenance m
WHERE c.customer_id = $1 AND m.id = 1 FOR UPDATE OF c
"""

# $1 call, $2 customer, $3 task, $4 phone, $5 language, $6 status, $7 pod, $8 reservation,
# $9 credits, $10 brief, $11 kind, $12 slots, $13 ask_user_mode.
INSERT_TASK_AND_CALL = """
WITH task AS (
    INSERT INTO tasks (task_id, customer_id, brief, language, kind, parsed_slots,
                       ask_user_mode)
    VALUES ($3, $2, $10, $5, $11, $12, $13) RETURNING task_id)
INSERT INTO calls (call_id, customer_id, task_id, target_phone, language, status, owner_pod,
                   reservation_id, credits_reserved, dial_started_at)
SELECT $1, $2, task.task_id, $4, $5, $6, $7, $8, $9,
       CASE WHEN $6 = 'scheduled' THEN now() END
FROM task
"""

# The recovery point before a queued call is sent to the carrier.
MARK_DIAL_STARTED = """
UPDATE calls SET dial_started_at = coalesce(dial_started_at, now())
WHERE call_id = $1 AND status = 'scheduled' RETURNING target_phone
"""

LOCK_STATUS = "SELECT status FROM calls WHERE call_id = $1 FOR UPDATE"

# Carrier callbacks may already have moved the call on: only a scheduled call changes.
RECORD_DIALED = (
    """
UPDATE calls c SET call_sid = coalesce(c.call_sid, $2),
       status = CASE WHEN c.status = 'scheduled' THEN 'dialing' ELSE c.status END,
       updated_at = now()
WHERE c.call_id = $1 RETURNING """
    + CALL_COLUMNS
)

LOCK_FOR_CANCEL = """
SELECT status, call_sid FROM calls WHERE call_id = $1 AND customer_id = $2 FOR UPDATE
"""

LOCK_FOR_TRANSITION = """
SELECT status, reservation_id, credits_reserved, duration_sec, customer_id FROM calls
WHERE call_id = $1 FOR UPDATE
"""

# $2 target, $3 call_sid, $4 duration, $5 target is terminal, $6/$7 outcome, $8 charge.
APPLY_TRANSITION = """
UPDATE calls SET
    status = $2,
    call_sid = coalesce($3, call_sid),
    duration_sec = $4,
    started_at = CASE WHEN $2 = 'in_progress' THEN coalesce(started_at, now())
                      ELSE started_at END,
    ended_at = CASE WHEN $5 THEN coalesce(ended_at, carrier_ended_at, now()) ELSE ended_at END,
    outcome_type = coalesce(outcome_type, $6),
    outcome_summary = coalesce(outcome_summary, $7),
    outcome_charge_cents = CASE WHEN $5 THEN $8 ELSE outcome_charge_cents END,
    updated_at = now()
WHERE call_id = $1
"""

FINAL_OUTCOME = """
SELECT outcome_type, outcome_summary, outcome, duration_sec, started_at IS NOT NULL AS answered
FROM calls WHERE call_id = $1
"""

SET_OUTCOME_TEXT = """
UPDATE calls SET outcome_type = $2, outcome_summary = $3 WHERE call_id = $1
"""

RECORDING_OF = "SELECT call_sid, recording_sid FROM calls WHERE call_id = $1"

ID_BY_SID = "SELECT call_id FROM calls WHERE call_sid = $1"

SET_ANSWERED_BY = "UPDATE calls SET answered_by = $2, updated_at = now() WHERE call_id = $1"

# The first recording found (callback or lookup) is the call's; None when it had one.
SET_RECORDING = """
UPDATE calls SET recording_sid = $2, recording_url = $3, recording_duration = $4,
    updated_at = now()
WHERE call_id = $1 AND recording_sid IS NULL
RETURNING call_id
"""

# $1 statuses before answer, $2 / $3 seconds without news before / after answer.
# Unfinished calls with no change for too long, with what tells why they are stuck.
STUCK = """
SELECT call_id, status, call_sid, owner_pod, dial_started_at IS NOT NULL AS dial_started,
    extract(epoch FROM now() - updated_at)::float8 AS idle_sec
FROM calls
WHERE (status = ANY($1::text[]) AND updated_at < now() - make_interval(secs => $2))
   OR (status = 'in_progress' AND updated_at < now() - make_interval(secs => $3))
"""

# Media attached: remember the owner pod (and the sid), return the task it runs. Each attach
# is numbered and clears a lost-session mark (core.app.lost_sessions). A session for another
# SID (a stream media will refuse) changes nothing: not the owner, the number or the mark.
ATTACH_SESSION = """
UPDATE calls c SET
    owner_pod = CASE WHEN b.ours THEN $2 ELSE c.owner_pod END,
    call_sid = coalesce(c.call_sid, nullif($3, '')),
    updated_at = CASE WHEN b.ours THEN now() ELSE c.updated_at END,
    media_session_seq = c.media_session_seq + CASE WHEN b.ours THEN 1 ELSE 0 END,
    session_lost_at = CASE WHEN b.ours THEN NULL ELSE c.session_lost_at END
FROM tasks t, (
    SELECT call_id, call_sid IS NULL OR $3 = '' OR call_sid = $3 AS ours
    FROM calls WHERE call_id = $1 FOR UPDATE
) b
WHERE c.call_id = $1 AND b.call_id = c.call_id AND t.task_id = c.task_id
RETURNING t.brief, t.language, t.kind, t.parsed_slots, t.ask_user_mode, c.call_sid,
    c.media_session_seq, c.customer_id
"""

APPEND_TRANSCRIPT = """
UPDATE calls SET transcript_full = transcript_full || jsonb_build_array($2::jsonb),
    updated_at = now()
WHERE call_id = $1
"""

APPEND_DECISION = """
UPDATE calls SET supervisor_decisions = supervisor_decisions || jsonb_build_array($2::jsonb),
    updated_at = now()
WHERE call_id = $1
"""

ADD_SIGNAL = """
UPDATE calls SET reservation_signals = array_append(reservation_signals, $2)
WHERE call_id = $1 AND NOT ($2 = ANY(reservation_signals))
"""

# What the post-call model reads, before the outcome's transaction (no lock while it thinks).
OUTCOME_CONTEXT = """
SELECT c.transcript_full, t.brief, t.kind
FROM calls c JOIN tasks t USING (task_id) WHERE c.call_id = $1
"""

LOCK_FOR_OUTCOME = """
SELECT c.customer_id, c.target_phone, c.language, c.status, c.reservation_signals,
    c.carrier_ended_at IS NOT NULL AS carrier_ended,
    c.supervisor_decisions, c.transcript_full, t.kind, t.parsed_slots
FROM calls c JOIN tasks t USING (task_id) WHERE c.call_id = $1 FOR UPDATE OF c
"""

# Whether the carrier's completed must wait for media's outcome (core.domain.call_states).
LOCK_FOR_CARRIER_END = """
SELECT status, media_session_seq > 0 AS media_attached, outcome IS NOT NULL AS reported
FROM calls WHERE call_id = $1 FOR UPDATE
"""

# $2 call_sid, $3 duration: the carrier's completion, kept until the outcome or the loss.
RECORD_CARRIER_END = """
UPDATE calls SET carrier_ended_at = coalesce(carrier_ended_at, now()),
    call_sid = coalesce(call_sid, $2), duration_sec = coalesce($3, duration_sec),
    updated_at = now()
WHERE call_id = $1
"""

SET_OUTCOME = """
UPDATE calls SET outcome = $2, outcome_type = $3, outcome_summary = $4, updated_at = now()
WHERE call_id = $1
"""
