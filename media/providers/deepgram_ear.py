"""The supervisor's ear: the callee's audio streamed to Deepgram live STT, as typed events.

Gemini hears the callee too, but its input transcription is coarse and arrives late; the
supervisor rules (voicemail, IVR, hold, screening) need fast, word-timed finals of the callee
side only. This stage owns the call's Deepgram `/v1/listen` websocket through the official
`deepgram-sdk` async client. The audio path must never wait on it: `push()` is synchronous and
drops the oldest buffered frame when Deepgram stalls. KeepAlive holds the stream open through
long silences (hold music, IVR waits). A lost stream (idle-timeout close, dropped socket, 429
or 5xx) is reopened with bounded exponential backoff while the call goes on: audio pushed in
the gap waits in the bounded buffer, and times from the new stream (which starts at 0 again)
are moved onto the call's clock by the audio the earlier streams consumed. Only a refused key
or request, or a spent reconnect budget, ends the stage with exactly one `EarLost`; deciding to
degrade to Gemini's transcription is the bridge's job, not ours.

The batch sibling (the recording after the call, for the merged transcript) is core's:
`core.adapters.deepgram_batch`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets.exceptions
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.socket_client import AsyncV1SocketClient
from deepgram.listen.v1.types.listen_v1error import ListenV1Error
from deepgram.listen.v1.types.listen_v1results import ListenV1Results
from deepgram.listen.v1.types.listen_v1speech_started import ListenV1SpeechStarted
from deepgram.listen.v1.types.listen_v1utterance_end import ListenV1UtteranceEnd
from pydantic import SecretStr

from common import metrics
from common.aio import cancel_and_wait
from media.providers.tls import default_tls

logger = logging.getLogger(__name__)

MULAW_BYTES_PER_S = 8000

PRODUCTION_HTTP_BASE = DeepgramClientEnvironment.PRODUCTION.base
PRODUCTION_WS_BASE = DeepgramClientEnvironment.PRODUCTION.production


@dataclasses.dataclass(frozen=True, slots=True)
class DeepgramConfig:
    """Where Deepgram lives and how to authenticate; only the base URLs differ in sim."""

    api_key: SecretStr
    http_base: str = PRODUCTION_HTTP_BASE
    ws_base: str = PRODUCTION_WS_BASE
    model: str = "nova-3"

    def client(self, http: httpx.AsyncClient) -> AsyncDeepgramClient:
        env = DeepgramClientEnvironment(
            base=self.http_base,
            production=self.ws_base,
            agent=self.ws_base,
            agent_rest=self.http_base,
        )
        return AsyncDeepgramClient(
            api_key=self.api_key.get_secret_value(), environment=env, httpx_client=http
        )


@dataclasses.dataclass(frozen=True, slots=True)
class CalleeTranscript:
    """A transcript span of the callee; interim spans are revised, finals are settled.

    A final is one whole utterance: Deepgram's `is_final` pieces joined up to `speech_final`
    (or UtteranceEnd, or the end of the stream). `start_s` is the first word's time, not the
    window's, because a window's `start` includes the silence before the words. All times are
    seconds of the audio pushed into the ear, across reconnections. `language` is the one
    Deepgram heard most in the span when the stream listens for any (`multi`), else "".
    """

    text: str
    is_final: bool
    speech_final: bool
    start_s: float
    end_s: float
    words: list[tuple[str, float, float]]
    language: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class UtteranceEnd:
    """No new words for `utterance_end_ms` after `last_word_end` (seconds from stream start)."""

    last_word_end: float


@dataclasses.dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Deepgram's VAD heard the callee start speaking at `timestamp` seconds."""

    timestamp: float


@dataclasses.dataclass(frozen=True, slots=True)
class EarLost:
    """The ear is gone for the rest of the call; `reason` is safe to log (no secrets)."""

    reason: str


EarEvent = CalleeTranscript | UtteranceEnd | SpeechStarted | EarLost


class DeepgramEar:
    """The live Deepgram stream (reopened when lost) for the callee side of one call.

    `async with ear:` starts a single owned task that connects, sends audio/KeepAlive and turns
    server messages into `EarEvent`s, reconnecting up to `reconnect_attempts` times in a row
    (backoff from `backoff_s`, doubling, capped at `max_backoff_s`); `aclose()` sends
    CloseStream, waits up to `close_timeout_s` for the last finals and the server's close, then
    cancels what is left. `events()` ends after the stream is closed or lost for good.
    """

    def __init__(
        self,
        config: DeepgramConfig,
        *,
        language: str = "en-US",
        keepalive_interval_s: float = 4.0,
        max_buffered_frames: int = 100,
        max_buffered_events: int = 256,
        close_timeout_s: float = 2.0,
        reconnect_attempts: int = 5,
        backoff_s: float = 0.25,
        max_backoff_s: float = 4.0,
        call_id: str = "",
    ) -> None:
        self._config = config
        self._language = language
        self._keepalive_interval_s = keepalive_interval_s
        self._close_timeout_s = close_timeout_s
        self._reconnect_attempts = reconnect_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._log_extra = {"call_id": call_id}
        # (byte position on the ear's audio clock, frame); None means "no more audio: send
        # CloseStream".
        self._audio: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(max_buffered_frames)
        self._pushed_bytes = 0
        self._stream_base: float | None = None  # the open stream's 0 on the ear's clock
        self._answered = False  # the open stream has sent us something
        self._closed = asyncio.Event()
        self._events: asyncio.Queue[EarEvent | None] = asyncio.Queue(max_buffered_events)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._finished = False
        self._lost = False
        self._server_error = ""
        self._pieces: list[ListenV1Results] = []  # is_final pieces of the open utterance
        self.dropped_frames = 0
        self.dropped_events = 0
        self.reconnects = 0  # attempts to reopen a lost stream (refused ones included)

    async def __aenter__(self) -> DeepgramEar:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="deepgram-ear")

    def push(self, mulaw_20ms: bytes) -> None:
        """Queue one μ-law frame; never blocks. Drops the oldest frame if Deepgram stalls."""
        if self._closing or self._finished:
            return
        at, self._pushed_bytes = self._pushed_bytes, self._pushed_bytes + len(mulaw_20ms)
        if self._offer(self._audio, (at, mulaw_20ms)):
            self.dropped_frames += 1

    async def events(self) -> AsyncIterator[EarEvent]:
        while (event := await self._events.get()) is not None:
            yield event
        self._events.put_nowait(None)  # keep the end visible to any later iteration

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._closed.set()
        task = self._task
        try:
            if task is not None and not task.done():
                self._offer(self._audio, None)
                await asyncio.wait({task}, timeout=self._close_timeout_s)
        finally:
            # Also on our own cancellation: the ear's task must never outlive its owner.
            await cancel_and_wait(task)
            self._finish()

    async def _run(self) -> None:
        # Attempts in a row that failed; a stream Deepgram answered on starts the count again.
        failures = 0
        try:
            while not self._closing:
                self._answered, self._stream_base, self._server_error = False, None, ""
                try:
                    await self._stream()
                    retry, reason = True, "deepgram closed the stream unexpectedly"
                except Exception as exc:
                    retry, reason = _retryable(exc), self._failure_reason(exc)
                self._flush()  # the lost stream's settled pieces are still the callee's words
                if self._closing:
                    return
                reason = self._server_error or reason
                failures = 1 if self._answered else failures + 1
                if not retry or failures > self._reconnect_attempts:
                    self._lose(reason)
                    return
                logger.warning("deepgram ear reconnecting: %s", reason, extra=self._log_extra)
                self.reconnects += 1
                await self._backoff(failures)
        finally:
            self._flush()
            self._finish()

    async def _backoff(self, failures: int) -> None:
        """Wait before the next attempt; `aclose()` cuts the wait short."""
        delay = min(self._max_backoff_s, self._backoff_s * 2 ** (failures - 1))
        try:
            async with asyncio.timeout(delay):
                await self._closed.wait()
        except TimeoutError:
            pass

    async def _stream(self) -> None:
        # The SDK wants an httpx client even for the websocket; the shared TLS context keeps
        # its construction off the audio path.
        async with httpx.AsyncClient(verify=default_tls()) as http:
            client = self._config.client(http)
            async with client.listen.v1.connect(
                model=self._config.model,
                encoding="mulaw",
                sample_rate=8000,
                channels=1,
                interim_results=True,
                endpointing=300,
                utterance_end_ms=1000,
                smart_format=True,
                vad_events=True,
                punctuate=True,
                language=self._language,
            ) as conn:
                logger.info("deepgram ear connected", extra=self._log_extra)
                async with asyncio.TaskGroup() as tg:
                    sender = tg.create_task(self._send_loop(conn), name="deepgram-ear-send")
                    await self._recv_loop(conn)
                    sender.cancel()

    def _failure_reason(self, exc: BaseException) -> str:
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        if isinstance(exc, ApiError):
            # The SDK's ApiError carries the request headers (the API key): never log it.
            if exc.status_code in (401, 403):
                return f"deepgram rejected the credentials (HTTP {exc.status_code})"
            return f"deepgram refused the stream (HTTP {exc.status_code})"
        if isinstance(exc, websockets.exceptions.ConnectionClosed):
            if exc.rcvd is not None:
                return f"deepgram connection closed (code {exc.rcvd.code} {exc.rcvd.reason})"
            return "deepgram connection dropped"
        if isinstance(exc, OSError | websockets.exceptions.WebSocketException):
            return f"deepgram unreachable ({type(exc).__name__})"
        logger.error("deepgram ear failed", exc_info=exc, extra=self._log_extra)
        return f"deepgram ear failed ({type(exc).__name__})"

    async def _send_loop(self, conn: AsyncV1SocketClient) -> None:
        while True:
            try:
                async with asyncio.timeout(self._keepalive_interval_s):
                    frame = await self._audio.get()
            except TimeoutError:
                await conn.send_keep_alive()
                continue
            if frame is None:
                await conn.send_close_stream()
                return
            at, audio = frame
            if self._stream_base is None:  # this stream's time 0 on the ear's clock
                self._stream_base = at / MULAW_BYTES_PER_S
            await conn.send_media(audio)

    async def _recv_loop(self, conn: AsyncV1SocketClient) -> None:
        async for message in conn:
            self._answered = True
            event = self._to_event(message)
            if event is not None:
                self._offer_event(event)

    def _to_event(self, message: object) -> EarEvent | None:
        if isinstance(message, ListenV1Results):
            if message.is_final:
                self._pieces.append(message)
                return self._flush_event() if message.speech_final else None
            return _span([message], is_final=False, shift=self._shift)
        if isinstance(message, ListenV1UtteranceEnd):
            self._flush()
            return UtteranceEnd(last_word_end=_at(message.last_word_end, self._shift))
        if isinstance(message, ListenV1SpeechStarted):
            return SpeechStarted(timestamp=_at(message.timestamp, self._shift))
        if isinstance(message, ListenV1Error):
            self._server_error = f"deepgram error {message.code or message.variant}"
            logger.warning(
                "deepgram stream error",
                extra={**self._log_extra, "variant": message.variant, "code": message.code},
            )
        return None

    def _flush_event(self) -> CalleeTranscript | None:
        pieces, self._pieces = self._pieces, []
        return _span(pieces, is_final=True, shift=self._shift)

    @property
    def _shift(self) -> float:
        return self._stream_base or 0.0

    def _flush(self) -> None:
        """Report the open utterance's settled pieces as one final line, if they hold words."""
        if (event := self._flush_event()) is not None:
            self._offer_event(event)

    def _lose(self, reason: str) -> None:
        if self._lost or self._finished or self._closing:
            return
        self._lost = True
        metrics.PROVIDER_ERRORS.labels("deepgram_ear", "ear_lost").inc()
        logger.warning("deepgram ear lost: %s", reason, extra=self._log_extra)
        self._offer_event(EarLost(reason))

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._offer_event(None)

    def _offer_event(self, event: EarEvent | None) -> None:
        if self._offer(self._events, event):
            self.dropped_events += 1

    @staticmethod
    def _offer(queue: asyncio.Queue[Any], item: object) -> bool:
        """put_nowait, evicting the oldest item when full; True if something was evicted."""
        evicted = False
        while True:
            try:
                queue.put_nowait(item)
                return evicted
            except asyncio.QueueFull:
                queue.get_nowait()
                evicted = True


def _retryable(exc: BaseException) -> bool:
    """Worth reconnecting: a lost or refused-for-now stream (network, close, 429, 5xx); not a
    refused key (401/403), a request Deepgram rejects (other 4xx) or a bug of ours."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, ApiError):
        return exc.status_code is None or exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, OSError | TimeoutError | websockets.exceptions.WebSocketException)


def _span(
    results: list[ListenV1Results], *, is_final: bool, shift: float
) -> CalleeTranscript | None:
    """One transcript span from Results pieces, moved `shift` seconds onto the ear's clock;
    None when they hold no words (silence)."""
    texts: list[str] = []
    words: list[tuple[str, float, float]] = []
    heard: dict[str, int] = {}  # language → words (only on `multi` streams)
    for result in results:
        alternatives = result.channel.alternatives
        if alternatives and alternatives[0].transcript:
            texts.append(alternatives[0].transcript)
            for w in alternatives[0].words:
                if w.language:
                    heard[w.language] = heard.get(w.language, 0) + 1
            words += [
                (w.punctuated_word or w.word, _at(w.start, shift), _at(w.end, shift))
                for w in alternatives[0].words
            ]
    if not texts:
        return None
    last = results[-1]
    return CalleeTranscript(
        text=" ".join(texts),
        is_final=is_final,
        speech_final=bool(last.speech_final),
        start_s=words[0][1] if words else _at(results[0].start, shift),
        end_s=words[-1][2] if words else _at(last.start + last.duration, shift),
        words=words,
        language=max(heard, key=heard.__getitem__) if heard else "",
    )


def _at(stream_s: float, shift: float) -> float:
    """A stream time on the ear's clock, to the millisecond (no float dust in offsets)."""
    return round(stream_s + shift, 3) if shift else stream_s
