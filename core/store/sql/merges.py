"""The merged-transcript jobs: enqueue at a call's end, wake on its recording, claim under
a lease with SKIP LOCKED, retry with backoff, finish by storing the merge on the call."""

ENQUEUE = """
INSERT INTO transcript_merges (call_id, not_before) VALUES ($1, now())
ON CONFLICT (call_id) DO NOTHING
"""

# The recording is here: stop waiting for it, now and later. The flag closes a race with a
# worker that read the call before the recording and is about to park the job
# (WAIT_FOR_RECORDING parks only while the flag is unset; both update the same row).
WAKE = """
UPDATE transcript_merges SET recording_seen = true, not_before = least(not_before, now()),
    updated_at = now()
WHERE call_id = $1 AND state = 'waiting'
"""

# The most overdue job nobody holds; $1 lease seconds. Attempts count claims, so a job
# whose claimer crashed mid-way is retried a bounded number of times, like any failure.
CLAIM = """
WITH next AS (
    SELECT call_id FROM transcript_merges
    WHERE state = 'waiting' AND not_before <= now()
      AND (lease_until IS NULL OR lease_until < now())
    ORDER BY not_before
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
UPDATE transcript_merges m SET lease_until = now() + make_interval(secs => $1),
    attempts = attempts + 1, updated_at = now()
FROM next WHERE m.call_id = next.call_id
RETURNING m.call_id, m.attempts
"""

# What the merge reads of the call.
INPUT = """
SELECT call_id, call_sid, language, duration_sec, recording_sid, recording_duration,
    transcript_full, outcome, ended_at + make_interval(secs => $2) AS recording_due,
    now() < ended_at + make_interval(secs => $2) AS may_wait
FROM calls WHERE call_id = $1
"""

# No recording callback yet: wait for it until $2 seconds after the call ended (its
# arrival wakes the job earlier); waiting is not a failed attempt.
WAIT_FOR_RECORDING = """
UPDATE transcript_merges SET lease_until = NULL, attempts = greatest(attempts - 1, 0),
    not_before = $2, updated_at = now()
WHERE call_id = $1 AND NOT recording_seen
RETURNING call_id
"""

# $2 seconds until the next try, $3 why this one failed.
RETRY_LATER = """
UPDATE transcript_merges SET lease_until = NULL,
    not_before = now() + make_interval(secs => $2), last_error = $3, updated_at = now()
WHERE call_id = $1
"""

# A claim given back unfinished (the process is stopping, or the recording arrived while
# the job was being parked): not counted as an attempt.
RELEASE = """
UPDATE transcript_merges SET lease_until = NULL, attempts = greatest(attempts - 1, 0),
    updated_at = now()
WHERE call_id = $1 AND state = 'waiting'
"""

LOCK_CALL = "SELECT 1 FROM calls WHERE call_id = $1 FOR UPDATE"

STORE = """
UPDATE calls SET merged_transcript = $2::jsonb, updated_at = now() WHERE call_id = $1
"""

FINISH = """
UPDATE transcript_merges SET state = 'done', lease_until = NULL, last_error = $2,
    updated_at = now()
WHERE call_id = $1 AND state = 'waiting'
RETURNING call_id
"""

# What GET /calls/{id}/transcript-merged reads; another customer's call reads as missing.
RESULT_FOR_CUSTOMER = """
SELECT c.status, c.duration_sec, c.transcript_full, c.merged_transcript,
    m.state AS merge_state
FROM calls c LEFT JOIN transcript_merges m USING (call_id)
WHERE c.call_id = $1 AND c.customer_id = $2
"""

PENDING = "SELECT state = 'waiting' FROM transcript_merges WHERE call_id = $1"
