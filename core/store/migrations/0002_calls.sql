-- Tasks, calls and the dial queue.

CREATE TABLE tasks (
    task_id       text PRIMARY KEY,
    customer_id   text NOT NULL REFERENCES customers (customer_id),
    brief         text NOT NULL,
    language      text NOT NULL CHECK (language IN ('ru', 'en', 'auto')),
    kind          text NOT NULL,
    parsed_slots  jsonb,
    ask_user_mode text NOT NULL CHECK (ask_user_mode IN ('any', 'stream')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE calls (
    call_id              text PRIMARY KEY,
    customer_id          text NOT NULL REFERENCES customers (customer_id),
    task_id              text NOT NULL REFERENCES tasks (task_id),
    target_phone         text NOT NULL,
    language             text NOT NULL,
    status               text NOT NULL CHECK (status IN (
                             'queued', 'scheduled', 'dialing', 'ringing', 'in_progress',
                             'completed', 'busy', 'no_answer', 'failed', 'cancelled')),
    call_sid             text UNIQUE,
    owner_pod            text,
    reservation_id       text NOT NULL,
    credits_reserved     bigint NOT NULL,
    dial_started_at      timestamptz,      -- set just before the provider is asked to dial
    started_at           timestamptz,      -- answered
    ended_at             timestamptz,
    duration_sec         double precision,
    outcome_type         text,
    outcome_summary      text,
    outcome              jsonb,
    outcome_charge_cents bigint NOT NULL DEFAULT 0,
    answered_by          text,
    recording_sid        text,
    recording_url        text,             -- the provider's URL; never shown to clients
    recording_duration   double precision,
    reservation_signals  text[] NOT NULL DEFAULT '{}',
    transcript_full      jsonb NOT NULL DEFAULT '[]',
    supervisor_decisions jsonb NOT NULL DEFAULT '[]',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_customer_created ON calls (customer_id, created_at DESC, call_id DESC);
CREATE INDEX calls_in_flight ON calls (customer_id)
    WHERE status IN ('scheduled', 'dialing', 'ringing', 'in_progress');
CREATE INDEX calls_unfinished ON calls (updated_at)
    WHERE status NOT IN ('completed', 'busy', 'no_answer', 'failed', 'cancelled');

CREATE TABLE dial_queue (
    queue_id    text PRIMARY KEY,
    seq         bigserial NOT NULL UNIQUE,   -- FIFO order
    call_id     text NOT NULL UNIQUE REFERENCES calls (call_id),
    customer_id text NOT NULL REFERENCES customers (customer_id),
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'warming', 'done')),
    lease_until timestamptz,
    claimed_by  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dial_queue_open ON dial_queue (seq) WHERE state IN ('pending', 'warming');
