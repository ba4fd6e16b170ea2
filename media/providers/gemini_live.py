"""Gemini Live for one call: the agent's voice and judgement, behind one stream of typed events.

A Gemini Live connection lives about ten minutes and can drop at any time, while a phone call
must not notice. Gemini offers resumption handles and announces planned cuts with `goAway`;
this stage turns that into one continuous `events()` stream. It keeps the newest resumable
handle, reconnects on `goAway` or a dropped socket with bounded backoff, buffers the caller's
audio meanwhile (only the newest `resume_audio_buffer_ms`, so the model hears what was just said
rather than a growing backlog), and reports the gap as `Resumed`, or `SessionLost` when the
conversation cannot continue. The official `google-genai` SDK owns the wire protocol; only its
`base_url` and TLS context differ between the simulated world and Google. Reading server
messages into events is `media.providers.live_translator`; what the agent is told (prompt,
tools, injected text turns) lives in `media.providers.agent_prompt`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import websockets.exceptions
from google import genai
from google.genai import live, types

from common.aio import cancel_and_wait
from media.providers import live_errors, live_wire
from media.providers.agent_prompt import agent_tools
from media.providers.live_errors import GeminiLiveError
from media.providers.live_events import (
    AudioOut,
    GenerationComplete,
    InputTranscript,
    Interrupted,
    LiveEvent,
    OutputTranscript,
    Resumed,
    SessionLost,
    TokensUsed,
    ToolCall,
    ToolCallCancelled,
    TurnComplete,
)
from media.providers.live_translator import LiveTranslator
from media.providers.tls import default_tls

logger = logging.getLogger(__name__)

__all__ = [  # the events are re-exported: callers import the whole session API from here
    "AudioOut",
    "GeminiLiveError",
    "GeminiLiveSession",
    "GenerationComplete",
    "InputTranscript",
    "Interrupted",
    "LiveEvent",
    "OutputTranscript",
    "Resumed",
    "SessionLost",
    "TokensUsed",
    "ToolCall",
    "ToolCallCancelled",
    "TurnComplete",
    "make_client",
]

DEFAULT_MODEL = "gemini-3.8-live"
# The published Live schema; the SDK's default path version may move under us.
API_VERSION = "v1beta"
AUDIO_IN_MIME = live_wire.AUDIO_IN_MIME
_IN_BYTES_PER_MS = 32  # PCM16 mono at 16 kHz


def make_client(
    api_key: str, base_url: str | None = None, ssl_context: ssl.SSLContext | None = None
) -> genai.Client:
    """A `genai.Client` that builds no TLS context of its own.

    Left alone, the SDK loads the CA bundle into three fresh SSL contexts per client (~80 ms of
    blocked event loop per call); handing it one context under both `ssl` (websocket, aiohttp)
    and `verify` (httpx) skips that. Share the client across sessions to skip even the rest.
    """
    tls = ssl_context or default_tls()
    options = types.HttpOptions(
        base_url=base_url.rstrip("/") if base_url else None,
        api_version=API_VERSION,
        # compression=None reaches the websocket: deflating base64 audio costs more CPU per
        # frame than it saves on the wire.
        async_client_args={"ssl": tls, "verify": tls, "compression": None},
    )
    return genai.Client(api_key=api_key, http_options=options)


class GeminiLiveSession:
    """One Gemini Live conversation for one call, surviving connection replacements.

    `async with session:` (or `await start()`) connects and waits for `setupComplete`, raising
    `GeminiLiveError` if the first connection cannot be made; then one owned task receives and
    reconnects until `aclose()`, which lets it close the socket cleanly (1000). `events()` is
    meant for a single consumer and ends after `SessionLost` or `aclose()`. The receive task
    waits for the consumer (bounded queue), so no event is ever dropped.
    """

    def __init__(
        self,
        api_key: str,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        client: genai.Client | None = None,
        system_instruction: str = "",
        tools: list[types.FunctionDeclaration] | None = None,
        voice: str | None = None,
        language_code: str | None = None,
        resume_gap_budget_ms: int = 8000,
        resume_audio_buffer_ms: int = 2000,
        max_reconnect_attempts: int = 6,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 2.0,
        goaway_margin_s: float = 1.0,
        max_buffered_events: int = 512,
        close_timeout_s: float = 2.0,
        call_id: str = "",
    ) -> None:
        self._api_key = api_key
        self._model = model
        self._base_url = base_url
        self._ssl_context = ssl_context
        self._system_instruction = system_instruction
        self._tools = agent_tools() if tools is None else tools
        self._voice = voice
        self._language_code = language_code
        self._budget_s = resume_gap_budget_ms / 1000
        self._max_attempts = max_reconnect_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._goaway_margin_s = goaway_margin_s
        self._close_timeout_s = close_timeout_s
        self._audio_buffer: collections.deque[bytes] = collections.deque()
        self._audio_buffer_cap = resume_audio_buffer_ms * _IN_BYTES_PER_MS
        self._audio_buffered = 0
        self._control_backlog: list[tuple[str, Any]] = []
        self._events: asyncio.Queue[LiveEvent | None] = asyncio.Queue(max_buffered_events)
        self._log_extra = {"call_id": call_id}
        self._client = client
        self._owns_client = client is None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._live: live.AsyncSession | None = None
        self._turns = LiveTranslator()  # also holds the resumption handle
        self._closing = False
        self._stop = asyncio.Event()  # aclose(): leave the connection with a clean close
        self._ended = False
        self._events_done = False
        self.dropped_audio_bytes = 0
        self.reconnects = 0

    async def __aenter__(self) -> GeminiLiveSession:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def resumption_handle(self) -> str | None:
        return self._turns.handle

    async def start(self) -> None:
        """Connect and wait for setup.

        Raises:
            GeminiLiveError: the first connection failed (after retries, if retryable).
        """
        if self._task is not None:
            raise RuntimeError("GeminiLiveSession already started")
        if self._client is None:
            self._client = make_client(self._api_key, self._base_url, self._ssl_context)
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name="gemini-live")
        try:
            await asyncio.shield(self._ready)
        except BaseException:
            await self.aclose()
            raise

    async def events(self) -> AsyncIterator[LiveEvent]:
        while not self._events_done:
            event = await self._events.get()
            if event is None:
                self._events_done = True
                return
            yield event

    async def send_audio(self, pcm16_16k: bytes) -> None:
        """Send caller audio; buffered while reconnecting, dropped once the session is over."""
        if self._ended or self._closing or not pcm16_16k:
            return
        session = self._live
        if session is None:
            self._buffer_audio(pcm16_16k)
            return
        try:
            await live_wire.send_audio(session, pcm16_16k)
        except websockets.exceptions.ConnectionClosed:
            if self._live is not None and self._live is not session:
                await self.send_audio(pcm16_16k)  # already reconnected meanwhile
            else:
                self._buffer_audio(pcm16_16k)  # flushed by the next _on_connected

    async def send_text(self, text: str, turn_complete: bool = True) -> None:
        """Inject an ordered text turn (a customer answer or guidance) into the conversation."""
        await self._send_control("text", (text, turn_complete))

    async def send_tool_response(
        self,
        call_id: str,
        name: str,
        response: dict[str, Any],
        *,
        scheduling: types.FunctionResponseScheduling | None = None,
    ) -> None:
        """Answer a tool call; `scheduling` only for a NON_BLOCKING tool."""
        reply = types.FunctionResponse(
            id=call_id, name=name, response=response, scheduling=scheduling
        )
        await self._send_control("tool", reply)

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stop.set()
        if self._task is not None:
            # The receive task leaves the SDK's `async with` on its own, which closes the
            # socket with 1000; cancelling inside it would close with 1011 (internal error).
            # Only a task stuck connecting or closing is cancelled after the timeout.
            await asyncio.wait({self._task}, timeout=self._close_timeout_s)
        await cancel_and_wait(self._task)
        if self._client is not None and self._owns_client:
            await self._client.aio.aclose()
            self._client.close()
        self._client = None
        if self._ready is not None and self._ready.done() and not self._ready.cancelled():
            self._ready.exception()  # retrieved: start() may not be there to see it
        self._finish()

    # ---- connection loop ----------------------------------------------------------------

    async def _run(self) -> None:
        assert self._client is not None and self._ready is not None
        lost_at = time.monotonic()  # start of the current outage (or of the first connect)
        attempt = 0
        try:
            while True:
                failure: GeminiLiveError | None = None
                try:
                    async with self._client.aio.live.connect(
                        model=self._model, config=self._connect_config()
                    ) as session:
                        await self._on_connected(session, lost_at)
                        attempt = 0
                        left_at = await self._pump_until_stopped(session)
                    if left_at is None:
                        return
                    lost_at = left_at
                except Exception as exc:
                    failure = live_errors.classify(exc)
                    if self._live is not None:  # an established connection dropped
                        lost_at = time.monotonic()
                    self._live = None
                    logger.warning(
                        "gemini live connection failed: %s", failure, extra=self._log_extra
                    )
                attempt += 1
                reason = self._give_up_reason(failure, attempt, lost_at)
                if reason is not None:
                    if not self._ready.done():
                        self._ready.set_exception(
                            failure or GeminiLiveError(reason, retryable=False)
                        )
                        return
                    logger.error("gemini live session lost: %s", reason, extra=self._log_extra)
                    await self._emit(SessionLost(reason))
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._backoff_s(attempt)):
                        await self._stop.wait()
                if self._stop.is_set():
                    return
        finally:
            self._live = None
            self._ended = True
            if not self._ready.done():
                self._ready.set_exception(
                    GeminiLiveError("gemini live session ended before setup", retryable=False)
                )
            self._finish()

    def _give_up_reason(
        self, failure: GeminiLiveError | None, attempt: int, lost_at: float
    ) -> str | None:
        if failure is not None and not failure.retryable:
            return str(failure)
        if self._ready is not None and self._ready.done() and self._turns.handle is None:
            return "connection lost before any resumption handle was issued"
        elapsed = time.monotonic() - lost_at + self._backoff_s(attempt)
        if attempt > self._max_attempts or elapsed > self._budget_s:
            last = f": {failure}" if failure is not None else ""
            return f"could not reconnect within the resume budget{last}"
        return None

    def _backoff_s(self, attempt: int) -> float:
        if attempt <= 1:
            return 0.0
        return float(min(self._backoff_max_s, self._backoff_initial_s * 2 ** (attempt - 2)))

    async def _on_connected(self, session: live.AsyncSession, lost_at: float) -> None:
        assert self._ready is not None
        resumed = self._ready.done()
        self._turns.model_speaking = False
        live_wire.install_tap(session, self._on_audio_content)
        if resumed:
            self.reconnects += 1
            gap_ms = round((time.monotonic() - lost_at) * 1000)
            logger.info("gemini live resumed", extra={**self._log_extra, "gap_ms": gap_ms})
        # Drain what piled up while disconnected, in order, before new sends go direct.
        while self._control_backlog:
            kind, payload = self._control_backlog.pop(0)
            await self._deliver(session, kind, payload)
        while self._audio_buffer:
            chunk = self._audio_buffer.popleft()
            self._audio_buffered -= len(chunk)
            await live_wire.send_audio(session, chunk)
        self._live = session
        if resumed:
            await self._emit(Resumed(gap_ms))
        else:
            logger.info("gemini live connected", extra=self._log_extra)
            self._ready.set_result(None)

    async def _pump_until_stopped(self, session: live.AsyncSession) -> float | None:
        """`_pump` until it returns or `aclose()` asks to stop (then None)."""
        pump = asyncio.create_task(self._pump(session), name="gemini-live-pump")
        stop = asyncio.create_task(self._stop.wait(), name="gemini-live-stop")
        try:
            await asyncio.wait({pump, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(stop)
            if not pump.done():
                await cancel_and_wait(pump)
        if pump.cancelled():
            return None
        return pump.result()  # a dropped socket raises here, inside the `async with`

    async def _pump(self, session: live.AsyncSession) -> float:
        """Turn server messages into events until `goAway`; raises when the socket drops.

        After `goAway` the model may be mid-sentence, and a handle taken mid-turn would resume
        from before that turn: keep reading until the model is quiet and a handle newer than
        its last output has arrived, or until `goaway_margin_s` before the announced cut.
        Returns the monotonic time the old connection was given up.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as window:
                while True:
                    # receive() ends after every completed turn, so it is re-entered.
                    receive = cast(AsyncGenerator[types.LiveServerMessage, None], session.receive())
                    async with contextlib.aclosing(receive) as messages:
                        async for message in messages:
                            for event in self._turns.translate(message):
                                await self._emit(event)
                            if message.go_away is not None and window.when() is None:
                                left = live_errors.seconds(message.go_away.time_left)
                                window.reschedule(loop.time() + left - self._goaway_margin_s)
                            if window.when() is not None and self._turns.quiet:
                                return self._leave("go_away")
        except TimeoutError:
            if not window.expired():
                raise
        return self._leave("go_away deadline while the model was busy")

    def _leave(self, why: str) -> float:
        self._live = None
        logger.info("gemini live replacing connection: %s", why, extra=self._log_extra)
        return time.monotonic()

    async def _on_audio_content(self, content: live_wire.AudioContent) -> None:
        for event in self._turns.audio_content(content):
            await self._emit(event)

    def _connect_config(self) -> types.LiveConnectConfig:
        speech: types.SpeechConfig | None = None
        if self._voice or self._language_code:
            voice = (
                types.VoiceConfig(
                    prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=self._voice)
                )
                if self._voice
                else None
            )
            speech = types.SpeechConfig(voice_config=voice, language_code=self._language_code)
        return types.LiveConnectConfig(
            response_modalities=[types.Modality.AUDIO],
            speech_config=speech,
            system_instruction=self._system_instruction or None,
            tools=[types.Tool(function_declarations=list(self._tools))] if self._tools else None,
            input_audio_transcription=types.AudioTranscriptionConfig(),
            output_audio_transcription=types.AudioTranscriptionConfig(),
            realtime_input_config=types.RealtimeInputConfig(
                automatic_activity_detection=types.AutomaticActivityDetection(disabled=False),
                activity_handling=types.ActivityHandling.START_OF_ACTIVITY_INTERRUPTS,
            ),
            session_resumption=types.SessionResumptionConfig(handle=self._turns.handle),
            context_window_compression=types.ContextWindowCompressionConfig(
                trigger_tokens=25_600, sliding_window=types.SlidingWindow(target_tokens=12_800)
            ),
        )

    # ---- sending ------------------------------------------------------------------------

    async def _send_control(self, kind: str, payload: Any) -> None:
        if self._ended or self._closing:
            raise GeminiLiveError("gemini live session is over", retryable=False)
        session = self._live
        if session is None:
            self._control_backlog.append((kind, payload))
            return
        try:
            await self._deliver(session, kind, payload)
        except websockets.exceptions.ConnectionClosed:
            if self._live is not None and self._live is not session:
                await self._send_control(kind, payload)  # already reconnected meanwhile
            else:
                self._control_backlog.append((kind, payload))  # flushed by _on_connected

    @staticmethod
    async def _deliver(session: live.AsyncSession, kind: str, payload: Any) -> None:
        if kind == "tool":
            await session.send_tool_response(function_responses=[payload])
        else:
            text, turn_complete = payload
            turn = types.Content(role="user", parts=[types.Part(text=text)])
            await session.send_client_content(turns=turn, turn_complete=turn_complete)

    def _buffer_audio(self, chunk: bytes) -> None:
        self._audio_buffer.append(chunk)
        self._audio_buffered += len(chunk)
        while self._audio_buffered > self._audio_buffer_cap and self._audio_buffer:
            old = self._audio_buffer.popleft()
            self._audio_buffered -= len(old)
            self.dropped_audio_bytes += len(old)

    async def _emit(self, event: LiveEvent) -> None:
        await self._events.put(event)

    def _finish(self) -> None:
        """Queue the end-of-stream marker, evicting the oldest event if nobody is reading."""
        while True:
            try:
                self._events.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._events.get_nowait()
