-- When the carrier reported a call completed while media, attached to it, had not yet
-- reported its outcome. The completion waits (core.domain.call_states.
-- on_carrier_completed): the outcome's arrival completes and charges the call; a
-- session found lost fails and releases it. Either way ended_at becomes this moment.
ALTER TABLE calls ADD COLUMN carrier_ended_at timestamptz;
