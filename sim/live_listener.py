"""What the Gemini Live stand-in hears: the client's messages after setup, and when a turn ends.

The SDK sends realtime audio, text turns (`clientContent`) and tool answers (`toolResponse`) in
either key casing (protocols.md E2.3); the server has already parsed each one strictly against
the v1beta schema (`sim.live_schema`), so this reads typed messages. A real Live model decides
by itself when the caller has finished speaking and stops talking when it is interrupted; the
stand-in does the same with an energy VAD measured in audio time (a turn ends after
`end_of_turn_silence_ms` of quiet audio following speech), so the bridge's pacing, not the wall
clock, decides what the model hears. Finished turns and tool answers go to the connection's
agent (`inbox`) when it has one, otherwise to the scripting API's queue and futures.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import numpy as np
from google.ai.generativelanguage_v1beta import types as v1beta
from google.protobuf import json_format

from sim import live_speaker
from sim.live_connection import LiveConnection, ToolResult, UserTurn

ClientMessage = v1beta.BidiGenerateContentClientMessage


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

    async def on_message(self, conn: LiveConnection, message: ClientMessage) -> None:
        """Handle one client message after setup (already parsed against the schema)."""
        kind = ClientMessage.pb(message).WhichOneof("message_type")
        if kind == "realtime_input":
            await self._on_realtime(conn, message.realtime_input)
        elif kind == "client_content":
            content = message.client_content
            conn.log.append(("client", "clientContent", _as_dict(content)))
            texts = [part.text for turn in content.turns for part in turn.parts if part.text]
            conn.texts.extend(texts)
            conn.usage.heard_text(" ".join(texts))
            if content.turn_complete:
                self._turn_ended(conn, UserTurn(conn.index, "text", text="\n".join(texts)))
        elif kind == "tool_response":
            conn.log.append(("client", "toolResponse", _as_dict(message.tool_response)))
            for response in message.tool_response.function_responses:
                self._on_tool_response(conn, response)
        else:  # a second setup
            conn.log.append(("client", "unknown", _as_dict(message)))
            assert conn.ws is not None
            await conn.ws.close(1007, "Invalid JSON payload: setup must be the first message.")

    def _on_tool_response(self, conn: LiveConnection, response: v1beta.FunctionResponse) -> None:
        answer = dict(_as_dict(response).get("response") or {})
        conn.usage.heard_text(json.dumps(answer))
        if response.id in conn.turn_calls:
            conn.turn_calls.remove(response.id)  # answered: nothing left to cancel
        scheduling = response.scheduling.name if response.scheduling else "SCHEDULING_UNSPECIFIED"
        conn.tool_responses.append(
            {"id": response.id, "name": response.name, "response": answer}
            | ({"scheduling": scheduling} if response.scheduling else {})
        )
        future = self.pending_tools.get(response.id)
        if future is not None and not future.done():
            future.set_result(answer)
        if conn.inbox is not None:
            result = ToolResult(response.id, response.name, answer, scheduling)
            conn.inbox.put_nowait(result)

    async def _on_realtime(
        self, conn: LiveConnection, realtime: v1beta.BidiGenerateContentRealtimeInput
    ) -> None:
        blobs = [realtime.audio] if "audio" in realtime else []
        blobs += list(realtime.media_chunks)
        for blob in blobs:
            mime, pcm = blob.mime_type, blob.data
            conn.log.append(("client", "realtimeInput.audio", len(pcm)))
            conn.audio_bytes += len(pcm)
            conn.audio_chunks += 1
            conn.audio_mime_types.add(mime)
            rate = re.search(r"rate=(\d+)", mime)
            hz = int(rate.group(1)) if rate else 16_000
            conn.usage.heard_audio(len(pcm) / 2 / hz)
            if conn.audio_tap is not None:
                conn.audio_tap(pcm, hz)
            await self._vad(conn, pcm, hz)
        if realtime.audio_stream_end:
            conn.log.append(("client", "realtimeInput.audioStreamEnd", True))
            conn.audio_stream_ends += 1
        for key, name in (("activity_start", "activityStart"), ("activity_end", "activityEnd")):
            if key in realtime:
                conn.log.append(("client", f"realtimeInput.{name}", {}))
        if realtime.text:
            conn.log.append(("client", "realtimeInput.text", realtime.text))
            conn.realtime_texts.append(realtime.text)

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


def _as_dict(message: Any) -> dict[str, Any]:
    """A parsed message as camelCase JSON (for the log and the scripting API's records)."""
    return dict(json_format.MessageToDict(type(message).pb(message)))
