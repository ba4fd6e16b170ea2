-- A call's media session that ended while the call was not over (its media pod may have died
-- or been cut off): when core noticed, and which attach it was. Each attach bumps media_session_seq and
-- clears session_lost_at, so a session re-attached within the grace window (to any replica)
-- is never taken for lost; one still lost after the grace is hung up and settled
-- (core.app.lost_sessions).
ALTER TABLE calls
    ADD COLUMN media_session_seq integer NOT NULL DEFAULT 0,
    ADD COLUMN session_lost_at   timestamptz;

CREATE INDEX calls_session_lost_idx ON calls (session_lost_at) WHERE session_lost_at IS NOT NULL;
