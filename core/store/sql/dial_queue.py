"""The dial queue: FIFO entries, the drainer's claim under a lease, and lease recovery."""

ADD = """
INSERT INTO dial_queue (queue_id, call_id, customer_id) VALUES ($1, $2, $3) RETURNING seq
"""

# $1 open states, $2 the new entry's seq.
COUNT_AHEAD = "SELECT count(*) FROM dial_queue WHERE state = ANY($1::text[]) AND seq < $2"

NOTIFY = "SELECT pg_notify($1, '')"

# The oldest pending entry whose customer is below the cap ($3: in-flight statuses),
# skipping entries another claimer holds; $1 lease seconds, $2 the claiming pod.
CLAIM = """
WITH next AS (
    SELECT q.queue_id FROM dial_queue q JOIN customers c USING (customer_id)
    WHERE q.state = 'pending'
      AND (SELECT count(*) FROM calls a
           WHERE a.customer_id = q.customer_id AND a.status = ANY($3::text[]))
          < c.max_concurrent_calls
    ORDER BY q.seq
    FOR UPDATE OF q SKIP LOCKED
    LIMIT 1
)
UPDATE dial_queue d SET state = 'warming', lease_until = now() + make_interval(secs => $1),
       claimed_by = $2
FROM next WHERE d.queue_id = next.queue_id
RETURNING d.queue_id, d.call_id, extract(epoch FROM now() - d.created_at)::float8 AS waited_sec
"""

PENDING = "SELECT count(*) FROM dial_queue WHERE state = 'pending'"

MARK_DONE = "UPDATE dial_queue SET state = 'done' WHERE queue_id = $1"

LEAVE = "UPDATE dial_queue SET state = 'done' WHERE call_id = $1 AND state <> 'done'"

EXPIRED_LEASES = """
SELECT q.queue_id, q.call_id, c.status, c.call_sid, c.dial_started_at
FROM dial_queue q JOIN calls c USING (call_id)
WHERE q.state = 'warming' AND q.lease_until < now()
FOR UPDATE OF q SKIP LOCKED
"""

RESOLVE_LEASE = "UPDATE dial_queue SET state = $2, lease_until = NULL WHERE queue_id = $1"
