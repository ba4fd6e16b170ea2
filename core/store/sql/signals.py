"""Cross-replica signalling: NOTIFY for commands, session advisory locks for leaders."""

NOTIFY = "SELECT pg_notify($1, $2)"

# Held by one session at a time; PostgreSQL frees it when that session ends.
TRY_LEADER_LOCK = "SELECT pg_try_advisory_lock($1)"

# A cheap round trip that fails once the lock's session is gone.
PING = "SELECT 1"
