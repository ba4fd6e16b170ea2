-- The post-call merged transcript: one durable job per answered call, and its result.
-- A job waits for the recording (`not_before`, until `recording_seen`), is claimed with FOR UPDATE SKIP LOCKED
-- under a lease (a crashed core's claim expires and another replica takes it), and is
-- retried with backoff; `done` once the merged transcript is stored on the call.
CREATE TABLE transcript_merges (
    call_id     text PRIMARY KEY REFERENCES calls (call_id) ON DELETE CASCADE,
    state       text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'done')),
    not_before  timestamptz NOT NULL,
    recording_seen boolean NOT NULL DEFAULT false,  -- the recording arrived: never park again
    attempts    integer NOT NULL DEFAULT 0,
    lease_until timestamptz,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transcript_merges_due ON transcript_merges (not_before) WHERE state = 'waiting';

ALTER TABLE calls ADD COLUMN merged_transcript jsonb;
