"""What the Gemini Live stand-in hears: the client's messages after setup, and when a turn ends.

The SDK sends realtime audio, text turns (`clientContent`) and tool answers (`toolResponse`)
in either key casing (protocols.md E2.3). A real Live model decides by itself when the caller
has finished speaking and stops talking when it is interrupted; the stand-in does the same
with an energy VAD measured in audio time (a turn ends after `end_of_turn_silence_ms` of
quiet audio following speech), so the bridge's pacing, not the wall clock, decides what the
model hears. Finished turns and tool answers go to the connection's agent (`inbox`) when it
has one, otherwise to the scripting API's queue and futures.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import numpy as np

from sim import live_speaker
from sim.live_connection import LiveConnection, ToolResult, UserTurn, b64decode, either_case


class Listener:
    """Reads every connection's client messages for one server and turns them into events."""

    def __init__(
        self,
        *,
        binary_frames: bool,
        vad_threshold_rms: float,
        barge_in: bool,
        end_of_turn_silence_ms: int,
    ) -> None:
        self.binary_frames = binary_frames
        self.vad_threshold_rms = vad_threshold_rms
        self.barge_in = barge_in
        self.end_of_turn_silence_ms = end_of_turn_silence_ms
        # Where turns and tool answers go for connections without an agent.
        self.user_turns: asyncio.Queue[UserTurn] = asyncio.Queue()
        self.pending_tools: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def on_message(self, conn: LiveConnection, message: dict[str, Any]) -> None:
        """Handle one client message after setup; an unknown one closes the socket (1007)."""
        realtime = either_case(message, "realtimeInput")
        content = either_case(message, "clientContent")
        tool_response = either_case(message, "toolResponse")
        if realtime is not None:
            await self._on_realtime(conn, realtime)
        if content is not None:
            conn.log.append(("client", "clientContent", content))
            texts = [
                str(part["text"])
                for turn in content.get("turns") or []
                for part in turn.get("parts") or []
                if "text" in part
            ]
            conn.texts.extend(texts)
            if either_case(content, "turnComplete"):
                self._turn_ended(conn, UserTurn(conn.index, "text", text="\n".join(texts)))
        if tool_response is not None:
            conn.log.append(("client", "toolResponse", tool_response))
            for response in either_case(tool_response, "functionResponses") or []:
                self._on_tool_response(conn, response)
        if realtime is None and content is None and tool_response is None:
            conn.log.append(("client", "unknown", message))
            assert conn.ws is not None
            await conn.ws.close(1007, "Invalid JSON payload: unknown client message.")

    def _on_tool_response(self, conn: LiveConnection, response: dict[str, Any]) -> None:
        conn.tool_responses.append(response)
        future = self.pending_tools.get(str(response.get("id")))
        if future is not None and not future.done():
            future.set_result(dict(response.get("response") or {}))
        if conn.inbox is not None:
            result = ToolResult(
                str(response.get("id", "")),
                str(response.get("name", "")),
                dict(response.get("response") or {}),
            )
            conn.inbox.put_nowait(result)

    async def _on_realtime(self, conn: LiveConnection, realtime: dict[str, Any]) -> None:
        blobs = [realtime["audio"]] if "audio" in realtime else []
        blobs += either_case(realtime, "mediaChunks") or []
        for blob in blobs:
            mime = str(either_case(blob, "mimeType") or "")
            pcm = b64decode(str(blob.get("data", "")))
            conn.log.append(("client", "realtimeInput.audio", len(pcm)))
            conn.audio_bytes += len(pcm)
            conn.audio_chunks += 1
            conn.audio_mime_types.add(mime)
            rate = re.search(r"rate=(\d+)", mime)
            hz = int(rate.group(1)) if rate else 16_000
            if conn.audio_tap is not None:
                conn.audio_tap(pcm, hz)
            await self._vad(conn, pcm, hz)
        for key in ("audioStreamEnd", "activityStart", "activityEnd", "text"):
            value = either_case(realtime, key)
            if value is None:
                continue
            conn.log.append(("client", f"realtimeInput.{key}", value))
            if key == "audioStreamEnd":
                conn.audio_stream_ends += 1
            elif key == "text":
                conn.realtime_texts.append(str(value))

    async def _vad(self, conn: LiveConnection, pcm: bytes, rate: int) -> None:
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        if samples.size == 0:
            return
        rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
        chunk_ms = samples.size * 1000 / rate
        if rms >= self.vad_threshold_rms:
            if conn.speaking and self.barge_in and not conn.interrupted:
                await live_speaker.interrupt(conn, binary=self.binary_frames)
            conn.speech_ms += chunk_ms
            conn.silence_ms = 0.0
        elif conn.speech_ms > 0:
            conn.silence_ms += chunk_ms
            if conn.silence_ms >= self.end_of_turn_silence_ms:
                turn = UserTurn(conn.index, "audio", audio_ms=round(conn.speech_ms))
                self._turn_ended(conn, turn)
                conn.speech_ms = conn.silence_ms = 0.0

    def _turn_ended(self, conn: LiveConnection, turn: UserTurn) -> None:
        if conn.inbox is not None:
            conn.inbox.put_nowait(turn)  # the connection's agent handles it
        else:
            self.user_turns.put_nowait(turn)
