"""Gemini Live server messages as typed events, and the turn state that resumption needs.

A 3.x server combines several fields in one frame, so every field of every message is read.
While translating, the translator also tracks what `media.providers.gemini_live` needs to
replace a connection after `goAway` without losing a turn: whether the model is mid-turn,
the newest resumable handle, and whether that handle was issued after the model's last output.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.genai import types

from media.providers import live_wire
from media.providers.live_events import (
    AudioOut,
    GenerationComplete,
    InputTranscript,
    Interrupted,
    LiveEvent,
    OutputTranscript,
    TokensUsed,
    ToolCall,
    ToolCallCancelled,
    TurnComplete,
)


class LiveTranslator:
    """Turns server messages into `LiveEvent`s for one session, across its connections.

    Attributes:
        handle: the newest resumable session handle, or None before the first one.
        model_speaking: the model has sent audio of a turn that is not over yet.
        handle_current: no model output since `handle` was issued.
    """

    def __init__(self) -> None:
        self.handle: str | None = None
        self.model_speaking = False
        self.handle_current = False

    @property
    def quiet(self) -> bool:
        """The model is between turns and `handle` resumes after everything it said."""
        return not self.model_speaking and self.handle_current

    def audio_content(self, content: live_wire.AudioContent) -> list[LiveEvent]:
        """The fast path's share of `translate`: audio and transcriptions only."""
        events: list[LiveEvent] = []
        if content.heard:
            events.append(InputTranscript(content.heard))
        if content.audio:
            self.model_speaking = True
            self.handle_current = False
            events.extend(AudioOut(pcm) for pcm in content.audio)
        if content.said:
            events.append(OutputTranscript(content.said))
        return events

    def translate(self, message: types.LiveServerMessage) -> list[LiveEvent]:
        """Every field of `message` that the session reports, in wire order."""
        events: list[LiveEvent] = []
        content = message.server_content
        if content is not None:
            # interim_input_transcription only previews text that input_transcription repeats.
            heard = content.input_transcription
            if heard is not None and heard.text:
                events.append(InputTranscript(heard.text))
            if content.model_turn is not None:
                for part in content.model_turn.parts or []:
                    blob = part.inline_data
                    # Text parts (e.g. thoughts) are not speech; only audio goes to the caller.
                    if blob is not None and blob.data and _is_audio(blob.mime_type):
                        events.append(AudioOut(blob.data))
                        self.model_speaking = True
                        self.handle_current = False
            said = content.output_transcription
            if said is not None and said.text:
                events.append(OutputTranscript(said.text))
            if content.interrupted:
                events.append(Interrupted())
            if content.generation_complete:
                events.append(GenerationComplete())
            if content.turn_complete:
                events.append(TurnComplete())
            if content.interrupted or content.generation_complete or content.turn_complete:
                self.model_speaking = False
        if message.tool_call is not None:
            for call in message.tool_call.function_calls or []:
                events.append(ToolCall(call.id or "", call.name or "", dict(call.args or {})))
                self.handle_current = False
        if message.tool_call_cancellation is not None:
            events.append(ToolCallCancelled(tuple(message.tool_call_cancellation.ids or ())))
        if message.usage_metadata is not None:
            events.append(tokens_used(message.usage_metadata))
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            self.handle = update.new_handle
            self.handle_current = True
        return events


def tokens_used(usage: types.UsageMetadata) -> TokensUsed:
    """One turn's `usageMetadata` as counts; absent fields count zero."""
    prompt = [*(usage.prompt_tokens_details or ()), *(usage.tool_use_prompt_tokens_details or ())]
    response = usage.response_tokens_details or ()
    return TokensUsed(
        input=(usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0),
        output=(usage.response_token_count or 0) + (usage.thoughts_token_count or 0),
        input_audio=_tokens_of(prompt, types.MediaModality.AUDIO),
        input_text=_tokens_of(prompt, types.MediaModality.TEXT),
        output_audio=_tokens_of(response, types.MediaModality.AUDIO),
        output_text=_tokens_of(response, types.MediaModality.TEXT),
    )


def _tokens_of(details: Sequence[types.ModalityTokenCount], modality: types.MediaModality) -> int:
    return sum(d.token_count or 0 for d in details if d.modality == modality)


def _is_audio(mime_type: str | None) -> bool:
    return mime_type is None or mime_type.startswith("audio/")
