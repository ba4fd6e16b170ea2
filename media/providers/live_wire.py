"""The two hot paths of a Gemini Live session, taken around google-genai's pydantic layer.

A call moves ~50 audio messages a second to Gemini and ~25 back. Through the SDK each one is
validated and converted by pydantic models (~40 µs out, ~60 µs in, measured on the dev box),
which made the SDK the largest CPU cost of a bridged call. These two shortcuts produce and
consume exactly the same wire messages the SDK does (protocols.md B3) and are used only for
plain audio; everything else (setup, text turns, tool calls, transcription-free control
messages, goAway, resumption) still goes through the SDK:

- `send_audio()` writes the `realtime_input` JSON the SDK would write (URL-safe base64, the
  SDK's `json.dumps` spacing) straight to the session's websocket.
- `AudioTap` stands in for the session's websocket on the receive side: a message that only
  carries model audio and/or transcriptions is decoded here and handed to a callback; any
  other message is passed to the SDK untouched.

Both reach the socket through the SDK's private `AsyncSession._ws`; if a future SDK renames
it, `send_audio` falls back to `send_realtime_input` and `install_tap` does nothing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from google.genai import live, types

AUDIO_IN_MIME = "audio/pcm;rate=16000"
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_CONTENT_KEYS = frozenset({"modelTurn", "inputTranscription", "outputTranscription"})
_TRANSCRIPT_KEYS = frozenset({"text"})  # the schema's whole `Transcription`


async def send_audio(session: live.AsyncSession, pcm: bytes) -> None:
    """`session.send_realtime_input(audio=Blob(pcm, AUDIO_IN_MIME))`, byte for byte."""
    ws = getattr(session, "_ws", None)
    if ws is None:
        await session.send_realtime_input(audio=types.Blob(data=pcm, mime_type=AUDIO_IN_MIME))
        return
    data = base64.urlsafe_b64encode(pcm).decode("ascii")
    await ws.send(
        f'{{"realtime_input": {{"audio": {{"data": "{data}", "mime_type": "{AUDIO_IN_MIME}"}}}}}}'
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AudioContent:
    """A `serverContent` with nothing but model audio and transcriptions, in wire order."""

    heard: str  # inputTranscription.text ("" when absent)
    audio: list[bytes]  # PCM16 24 kHz chunks of modelTurn.parts[].inlineData
    said: str  # outputTranscription.text ("" when absent)


def parse_audio_content(raw: bytes | str) -> AudioContent | None:
    """The message as `AudioContent`, or None if it carries anything else (or is not JSON)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or len(obj) != 1:
        return None
    content = obj.get("serverContent")
    if not isinstance(content, dict) or not content or not content.keys() <= _CONTENT_KEYS:
        return None
    audio: list[bytes] = []
    turn = content.get("modelTurn")
    if turn is not None:
        parts = turn.get("parts") if isinstance(turn, dict) else None
        if not isinstance(parts, list) or not turn.keys() <= {"parts", "role"}:
            return None
        for part in parts:
            blob = part.get("inlineData") if isinstance(part, dict) else None
            if not isinstance(blob, dict) or len(part) != 1:
                return None
            mime, data = blob.get("mimeType"), blob.get("data")
            if not isinstance(data, str) or not (mime is None or str(mime).startswith("audio/")):
                return None
            try:
                pcm = binascii.a2b_base64(data.encode("ascii").translate(_URLSAFE))
            except (binascii.Error, UnicodeEncodeError):
                return None
            if pcm:
                audio.append(pcm)
    try:
        heard = _transcript(content.get("inputTranscription"))
        said = _transcript(content.get("outputTranscription"))
    except ValueError:
        return None
    return AudioContent(heard, audio, said)


def _transcript(value: Any) -> str:
    """The transcription's text; "" when absent or empty.

    Raises:
        ValueError: the transcription carries something the fast path does not model.
    """
    if value is None:
        return ""
    if not isinstance(value, dict) or not value.keys() <= _TRANSCRIPT_KEYS:
        raise ValueError("not a plain transcription")
    text = value.get("text") or ""
    if not isinstance(text, str):
        raise ValueError("not a plain transcription")
    return text


class AudioTap:
    """The session's websocket, minus the audio messages `on_audio` has already consumed."""

    def __init__(self, ws: Any, on_audio: Callable[[AudioContent], Awaitable[None]]) -> None:
        self._ws = ws
        self._on_audio = on_audio

    async def recv(self, decode: bool | None = None) -> Any:
        # The SDK reads with decode=False and parses bytes or text alike.
        while True:
            raw = await self._ws.recv(decode=decode)
            content = parse_audio_content(raw)
            if content is None:
                return raw
            await self._on_audio(content)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


def install_tap(
    session: live.AsyncSession, on_audio: Callable[[AudioContent], Awaitable[None]]
) -> None:
    """Route the session's audio-only messages to `on_audio` from now on."""
    ws = getattr(session, "_ws", None)
    if ws is not None and not isinstance(ws, AudioTap):
        session._ws = AudioTap(ws, on_audio)  # type: ignore[assignment]
