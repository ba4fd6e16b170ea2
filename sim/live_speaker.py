"""How the Gemini Live stand-in speaks: one model turn on one connection, paced like Google's.

A real Live session answers with 24 kHz PCM16 in chunks that arrive at about real time, the
output transcription spread over the same messages, then `generationComplete` and
`turnComplete` with the turn's `usageMetadata` (`sim.live_usage`); a barge-in cuts the turn
short with `interrupted`, a `turnComplete` and the withdrawal of the turn's pending function
calls (protocols.md B3, E2.4). The bridge's playout, barge-in and transcript
handling are only exercised if the turn really is spread out in time, so the pacing lives
here, apart from the server's socket handling (`sim.gemini_live_server`) and from what it
hears (`sim.live_listener`).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from websockets.exceptions import ConnectionClosed

from sim.live_connection import LiveConnection, SayResult, ToolsCancelled

AUDIO_OUT_MIME = "audio/pcm;rate=24000"
_OUT_BYTES_PER_S = 48_000  # PCM16 mono at 24 kHz


async def speak(
    conn: LiveConnection,
    audio_pcm24k: bytes,
    transcript: str = "",
    *,
    binary: bool,
    chunk_ms: int = 40,
    pace: float = 1.0,
    input_transcript: str | None = None,
) -> SayResult:
    """One model turn: 24 kHz audio in `chunk_ms` chunks, each sent `pace × chunk_ms` after
    the previous one (1.0 = real time, 0 = as fast as the socket takes them).

    Each chunk message also carries its share of the output transcription (3.x servers put
    several fields in one `serverContent`); a transcription has only `text`, so what ends
    the line for the client is what ends the turn. Ends with `generationComplete` and
    `turnComplete` + `usageMetadata`, or no `generationComplete` after an interruption. A
    connection that closes mid-turn ends it early (`connection_closed`), it does not raise.
    """

    async def send(message: dict[str, Any]) -> None:
        await conn.send(message, binary=binary)

    if input_transcript is not None:
        await send({"serverContent": {"inputTranscription": {"text": input_transcript}}})
    step = max(2, 24_000 * 2 * chunk_ms // 1000)
    chunks = [audio_pcm24k[i : i + step] for i in range(0, len(audio_pcm24k), step)]
    pieces = _spread(transcript.split(), max(1, len(chunks)))
    conn.speaking, conn.interrupted = True, False
    sent = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        for i, piece in enumerate(pieces):
            if conn.interrupted:
                break
            content: dict[str, Any] = {}
            if i < len(chunks):
                data = base64.b64encode(chunks[i]).decode()
                content["modelTurn"] = {
                    "parts": [{"inlineData": {"mimeType": AUDIO_OUT_MIME, "data": data}}]
                }
            if piece:
                content["outputTranscription"] = {"text": piece}
            if content:
                await send({"serverContent": content})
            if i < len(chunks):
                sent += len(chunks[i])
            if pace > 0:
                await asyncio.sleep(
                    max(0.0, started + (i + 1) * chunk_ms * pace / 1000 - loop.time())
                )
        # What was generated is billed, whether or not the caller let it finish.
        usage = conn.usage.turn(sent / _OUT_BYTES_PER_S)
        if conn.interrupted:
            await send({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
            return SayResult(sent, True)
        await send({"serverContent": {"generationComplete": True}})
        conn.turn_calls.clear()  # the turn is over: its calls can no longer be interrupted
        await send({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
        return SayResult(sent, False)
    except ConnectionClosed:
        return SayResult(sent, conn.interrupted, connection_closed=True)
    finally:
        conn.speaking = False


async def interrupt(conn: LiveConnection, *, binary: bool) -> None:
    """Barge-in: stop the turn `speak()` is sending and tell the client it was interrupted.

    The NON_BLOCKING function calls of the interrupted turn that are still unanswered are
    withdrawn with `toolCallCancellation` (the only case in which the real server sends it);
    the connection's agent hears of it through its inbox.
    """
    conn.interrupted = True
    await conn.send({"serverContent": {"interrupted": True}}, binary=binary)
    if conn.cancel_tools_on_barge_in and conn.turn_calls:
        ids, conn.turn_calls = list(conn.turn_calls), []
        await conn.send({"toolCallCancellation": {"ids": ids}}, binary=binary)
        if conn.inbox is not None:
            conn.inbox.put_nowait(ToolsCancelled(tuple(ids)))


def _spread(words: list[str], slots: int) -> list[str]:
    """Distribute words over `slots` chunk messages; `"".join(pieces)` is the whole text."""
    pieces = [""] * slots
    for i, word in enumerate(words):
        slot = i * slots // max(1, len(words))
        pieces[slot] += word if i == 0 else f" {word}"
    return pieces
