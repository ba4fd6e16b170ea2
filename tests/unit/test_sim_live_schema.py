"""The simulated Gemini reads frames the way the published v1beta schema does."""

from __future__ import annotations

import json

import pytest

from sim import live_schema


def test_both_key_casings_and_url_safe_base64_parse() -> None:
    frame = {"realtime_input": {"audio": {"data": "AP-_", "mime_type": "audio/pcm;rate=16000"}}}
    message = live_schema.parse_client_frame(json.dumps(frame))
    assert message.realtime_input.audio.data == b"\x00\xff\xbf"
    camel = {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}]}}
    assert live_schema.parse_client_frame(json.dumps(camel)).client_content.turns[0].parts[0].text


@pytest.mark.parametrize(
    "frame",
    [
        {"realtime_input": {"audio": {"data": "AA==", "mimeType": "x", "finished": True}}},
        {"toolResponse": {"functionResponses": [{"id": "1", "name": "x", "behavior": 1}]}},
        {"somethingElse": {}},
        {},
    ],
)
def test_unknown_fields_and_empty_messages_are_rejected(frame: dict[str, object]) -> None:
    with pytest.raises(live_schema.SchemaError):
        live_schema.parse_client_frame(json.dumps(frame))


def test_server_frames_are_checked_against_the_schema() -> None:
    assert live_schema.server_frame_errors(json.dumps({"setupComplete": {}})) is None
    ok = {"serverContent": {"outputTranscription": {"text": "Hi"}, "generationComplete": True}}
    assert live_schema.server_frame_errors(json.dumps(ok)) is None
    finished = {"serverContent": {"outputTranscription": {"text": "Hi", "finished": True}}}
    assert "finished" in (live_schema.server_frame_errors(json.dumps(finished)) or "")
    session = {"setupComplete": {"sessionId": "sess-1"}}
    assert live_schema.server_frame_errors(json.dumps(session)) is not None
