-- Durable call events (the truth behind SSE) and ask_user requests.

CREATE TABLE call_events (
    event_id   bigserial PRIMARY KEY,
    call_id    text NOT NULL REFERENCES calls (call_id),
    type       text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_events_call ON call_events (call_id, event_id);

CREATE TABLE ask_user_requests (
    request_id  text PRIMARY KEY,
    call_id     text NOT NULL REFERENCES calls (call_id),
    question    text NOT NULL,
    options     jsonb NOT NULL DEFAULT '[]',
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'answered', 'timed_out', 'cancelled')),
    answer      text,
    mode        text CHECK (mode IN ('voice', 'context')),
    channel     text,                -- where the question was delivered
    answered_via text,               -- api, webhook, telegram
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    answered_at timestamptz
);
CREATE INDEX ask_user_pending ON ask_user_requests (call_id, created_at) WHERE status = 'pending';

ALTER TABLE customers ADD COLUMN telegram_chat_id bigint;
