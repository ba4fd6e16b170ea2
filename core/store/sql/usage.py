"""A call's provider usage (call_usage): media's running totals and the merge's batch audio.

Every write keeps the larger of the stored and the new value, column by column: media sends
totals, never increments, so a repeated, replayed or late report cannot count twice.
"""

# $2..$8: gemini input, output, input audio, input text, output audio, output text tokens;
# deepgram live milliseconds.
RECORD_LIVE = """
INSERT INTO call_usage AS u (call_id, gemini_input_tokens, gemini_output_tokens,
    gemini_input_audio_tokens, gemini_input_text_tokens, gemini_output_audio_tokens,
    gemini_output_text_tokens, deepgram_live_ms)
SELECT c.call_id, $2, $3, $4, $5, $6, $7, $8 FROM calls c WHERE c.call_id = $1
ON CONFLICT (call_id) DO UPDATE SET
    gemini_input_tokens = greatest(u.gemini_input_tokens, excluded.gemini_input_tokens),
    gemini_output_tokens = greatest(u.gemini_output_tokens, excluded.gemini_output_tokens),
    gemini_input_audio_tokens =
        greatest(u.gemini_input_audio_tokens, excluded.gemini_input_audio_tokens),
    gemini_input_text_tokens =
        greatest(u.gemini_input_text_tokens, excluded.gemini_input_text_tokens),
    gemini_output_audio_tokens =
        greatest(u.gemini_output_audio_tokens, excluded.gemini_output_audio_tokens),
    gemini_output_text_tokens =
        greatest(u.gemini_output_text_tokens, excluded.gemini_output_text_tokens),
    deepgram_live_ms = greatest(u.deepgram_live_ms, excluded.deepgram_live_ms),
    updated_at = now()
"""

# $2: milliseconds of recording the merge sent to Deepgram's batch API.
RECORD_BATCH = """
INSERT INTO call_usage AS u (call_id, deepgram_batch_ms)
SELECT c.call_id, $2 FROM calls c WHERE c.call_id = $1
ON CONFLICT (call_id) DO UPDATE SET
    deepgram_batch_ms = greatest(u.deepgram_batch_ms, excluded.deepgram_batch_ms),
    updated_at = now()
"""
