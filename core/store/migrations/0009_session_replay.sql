-- A call's media session survives a core restart: media re-attaches and replays what core
-- may not have stored, and commands to media are durable rows, NOTIFY only their wake-up.

-- The reports (transcript lines, decisions, signals, questions, the outcome) applied per
-- call, by media's per-call sequence number: a replayed report finds its row and is skipped.
CREATE TABLE session_reports (
    call_id    text NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    seq        bigint NOT NULL CHECK (seq > 0),
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, seq)
);

-- Commands to the call's media session. `pending` until a session sent it, `delivered` once
-- sent (sent again on every re-attach until acknowledged), `acknowledged` when media took it.
CREATE TABLE session_commands (
    command_id      bigserial PRIMARY KEY,
    call_id         text NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('answer', 'hang_up', 'answered_by')),
    request_id      text NOT NULL DEFAULT '',
    reason          text NOT NULL DEFAULT '',
    answered_by     text NOT NULL DEFAULT '',
    state           text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'delivered', 'acknowledged')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    acknowledged_at timestamptz
);
CREATE INDEX session_commands_open ON session_commands (call_id, command_id)
    WHERE state <> 'acknowledged';
