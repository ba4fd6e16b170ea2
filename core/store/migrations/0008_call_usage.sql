-- What each call used of the providers: Gemini Live tokens and Deepgram live seconds (running
-- totals media reports; each column only grows, so a repeated or replayed report counts once)
-- and the Deepgram batch seconds of the post-call merge. Carrier minutes come from
-- calls.duration_sec (the final status callback's CallDuration).
CREATE TABLE call_usage (
    call_id                    text PRIMARY KEY REFERENCES calls (call_id) ON DELETE CASCADE,
    gemini_input_tokens        bigint NOT NULL DEFAULT 0 CHECK (gemini_input_tokens >= 0),
    gemini_output_tokens       bigint NOT NULL DEFAULT 0 CHECK (gemini_output_tokens >= 0),
    gemini_input_audio_tokens  bigint NOT NULL DEFAULT 0 CHECK (gemini_input_audio_tokens >= 0),
    gemini_input_text_tokens   bigint NOT NULL DEFAULT 0 CHECK (gemini_input_text_tokens >= 0),
    gemini_output_audio_tokens bigint NOT NULL DEFAULT 0 CHECK (gemini_output_audio_tokens >= 0),
    gemini_output_text_tokens  bigint NOT NULL DEFAULT 0 CHECK (gemini_output_text_tokens >= 0),
    deepgram_live_ms           bigint NOT NULL DEFAULT 0 CHECK (deepgram_live_ms >= 0),
    deepgram_batch_ms          bigint NOT NULL DEFAULT 0 CHECK (deepgram_batch_ms >= 0),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);
