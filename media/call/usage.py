"""What one call uses of the live providers, counted as it happens and reported as totals.

Gemini Live sends `usageMetadata` once per model turn, for that turn only (its prompt count
includes the conversation so far, which the model processed, and is billed, again): the
call's tokens are the sum over turns, whichever connection of a resumed session they came on.
A turn cut short by a dropped connection before its usage arrived is not counted: the API
never reports it. Deepgram bills the audio streamed to it; the ear's share is counted here,
where the bridge hands audio to the ear (or to the backlog that feeds it), whatever the
ear does with its connections.

Core is sent running totals, never increments (`core_link.Usage`): it keeps the largest of
each, so a report that is repeated, replayed or overtaken by a later one counts once.
"""

from __future__ import annotations

from media.call import core_link
from media.providers.live_events import TokensUsed

MULAW_BYTES_PER_MS = 8  # 8 kHz μ-law, one byte a sample


class CallUsage:
    """The running totals of one call; `totals()` is what core is sent.

    Besides a report after each model turn and one at the end, `due()` offers the totals
    every `report_every_s` while they change (hold music, a long IVR: the ear's seconds grow
    with no turn), so a media process that dies mid-call has reported most of its usage.
    """

    def __init__(self, report_every_s: float = 30.0) -> None:
        self._tokens = TokensUsed(0, 0)
        self._ear_bytes = 0
        self._every_s = report_every_s
        self._reported: core_link.Usage | None = None
        self._reported_at = 0.0

    def add_tokens(self, turn: TokensUsed) -> None:
        t = self._tokens
        self._tokens = TokensUsed(
            input=t.input + turn.input,
            output=t.output + turn.output,
            input_audio=t.input_audio + turn.input_audio,
            input_text=t.input_text + turn.input_text,
            output_audio=t.output_audio + turn.output_audio,
            output_text=t.output_text + turn.output_text,
        )

    def add_ear_audio(self, mulaw: bytes) -> None:
        self._ear_bytes += len(mulaw)

    def totals(self) -> core_link.Usage:
        t = self._tokens
        return core_link.Usage(
            gemini_input_tokens=t.input,
            gemini_output_tokens=t.output,
            gemini_input_audio_tokens=t.input_audio,
            gemini_input_text_tokens=t.input_text,
            gemini_output_audio_tokens=t.output_audio,
            gemini_output_text_tokens=t.output_text,
            deepgram_live_ms=self._ear_bytes // MULAW_BYTES_PER_MS,
        )

    def due(self, now: float) -> core_link.Usage | None:
        """The totals, if `report_every_s` passed since the last `due()` report and they
        changed since; else None. `now` is any monotonic clock."""
        if now - self._reported_at < self._every_s:
            return None
        totals = self.totals()
        if totals == self._reported:
            return None
        self._reported, self._reported_at = totals, now
        return totals
