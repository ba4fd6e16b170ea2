"""Server frames as the SDK parses them, read into the bridge's events: no `finished` exists
on a transcription, so the events carry only text and the turn events end lines."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.genai import types

from media.providers import live_wire
from media.providers.live_events import (
    AudioOut,
    GenerationComplete,
    InputTranscript,
    Interrupted,
    OutputTranscript,
    TurnComplete,
)
from media.providers.live_translator import LiveTranslator


def parsed(frame: dict[str, Any]) -> types.LiveServerMessage:
    """The frame as google-genai's `AsyncSession.receive()` hands it over."""
    return types.LiveServerMessage._from_response(response=frame, kwargs={})


def test_a_combined_frame_is_read_field_by_field_in_wire_order() -> None:
    pcm = b"\x01\x02" * 10
    frame = {
        "serverContent": {
            "inputTranscription": {"text": "Hello"},
            "modelTurn": {
                "parts": [
                    {
                        "inlineData": {
                            "mimeType": "audio/pcm;rate=24000",
                            "data": base64.b64encode(pcm).decode(),
                        }
                    }
                ]
            },
            "outputTranscription": {"text": "Hi there"},
        }
    }
    assert LiveTranslator().translate(parsed(frame)) == [
        InputTranscript("Hello"),
        AudioOut(pcm),
        OutputTranscript("Hi there"),
    ]


def test_turn_events_come_through_and_empty_transcriptions_do_not() -> None:
    translator = LiveTranslator()
    assert translator.translate(parsed({"serverContent": {"outputTranscription": {}}})) == []
    assert translator.translate(parsed({"serverContent": {"generationComplete": True}})) == [
        GenerationComplete()
    ]
    assert translator.translate(parsed({"serverContent": {"interrupted": True}})) == [Interrupted()]
    assert translator.translate(parsed({"serverContent": {"turnComplete": True}})) == [
        TurnComplete()
    ]


def test_the_fast_path_reads_the_schemas_transcription_and_leaves_the_rest_to_the_sdk() -> None:
    plain = {"serverContent": {"inputTranscription": {"text": "Hello"}}}
    content = live_wire.parse_audio_content(json.dumps(plain))
    assert content == live_wire.AudioContent("Hello", [], "")
    assert LiveTranslator().audio_content(content) == [InputTranscript("Hello")]
    extra = {"serverContent": {"inputTranscription": {"text": "Hello", "finished": True}}}
    assert live_wire.parse_audio_content(json.dumps(extra)) is None
