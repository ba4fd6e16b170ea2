"""The media side of a live call's link to core: one bidirectional session per call.

Core owns every rule and all state; media only reports what happens on the call and carries
out what core decides. The bridge talks to core through the `CoreLink` port: `attach()` once
when the first media stream of a call starts (core answers with the call's task), then
fire-and-forget reports (transcript lines, ask_user requests, supervisor decisions, reservation
signals, the outcome, provider usage) and one stream of commands back (answers to ask_user,
hang-up).

Reports never block the audio path: they are queued and written in order by the link's own
task, and `aclose()` flushes what is queued (bounded) before half-closing, so an outcome sent
just before hanging up still reaches core. `GrpcCoreLink` runs over
`MediaSessionService.Session` (metadata `x-internal-token`); tests and benchmarks use the
in-memory `tests.fakes.core_link.InMemoryCore` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, Protocol

import grpc
from callagent.v1 import media_pb2, media_pb2_grpc
from google.protobuf import json_format

from common.aio import cancel_and_wait

logger = logging.getLogger(__name__)

INTERNAL_TOKEN_HEADER = "x-internal-token"


class CoreLinkError(Exception):
    """Core refused or did not answer the attach; the call cannot run on this pod."""


@dataclasses.dataclass(frozen=True, slots=True)
class CallTask:
    """What the agent must do on this call (core's answer to attach)."""

    call_id: str
    brief: str
    language: str = "auto"
    kind: str = ""
    parsed_slots: dict[str, Any] = dataclasses.field(default_factory=dict)
    ask_user_mode: str = "any"
    # The call's SID as core knows it ("" if core has none yet): the stream must match it.
    call_sid: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Transcript:
    """One transcript line; `offset_ms` counts from the call's first media stream."""

    speaker: Literal["agent", "callee"]
    text: str
    final: bool
    offset_ms: int
    source: Literal["gemini", "supervisor_stt"]


@dataclasses.dataclass(frozen=True, slots=True)
class AskUser:
    """A question for the customer; `request_id` (chosen by media) comes back on the answer."""

    request_id: str
    question: str
    timeout_sec: int
    options: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class DecisionReport:
    """A supervisor decision, with the cue that caused it (never transcript text)."""

    kind: str
    reason: str
    action: str


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """The call's structured result (the agent's end_call, or the bridge's fallback)."""

    outcome: str
    summary: str
    date_time: str = ""
    guests: int | None = None
    holder_name: str = ""
    refusal_reason: str = ""
    venue_name: str = ""
    # voicemail, silence, time_limit, hold, agent_repeating; "" for an ordinary end_call.
    ending: str = ""
    language: str = ""
    contact_phone: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """The call's provider usage so far: running totals, so core counts a repeat once."""

    gemini_input_tokens: int = 0
    gemini_output_tokens: int = 0
    gemini_input_audio_tokens: int = 0
    gemini_input_text_tokens: int = 0
    gemini_output_audio_tokens: int = 0
    gemini_output_text_tokens: int = 0
    deepgram_live_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """The customer's answer to `request_id`; `mode` is voice (say it) or context (guidance)."""

    request_id: str
    answer: str
    mode: Literal["voice", "context"] = "voice"
    timed_out: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class HangUp:
    """Core wants the call over now (cancelled, max duration, ...): no goodbye."""

    reason: str


CoreCommand = Answer | HangUp


class CoreLink(Protocol):
    """One call's session with core. `attach()` first; the `send_*` methods never block."""

    async def attach(self, call_id: str, call_sid: str, stream_sid: str, pod: str) -> CallTask:
        """Open the session and return the task.

        Raises:
            CoreLinkError: core refused the call or did not answer in time.
        """
        ...

    def send_transcript(self, line: Transcript) -> None: ...

    def ask_user(self, request: AskUser) -> None: ...

    def send_decision(self, decision: DecisionReport) -> None: ...

    def send_signal(self, name: str) -> None: ...

    def send_outcome(self, outcome: Outcome) -> None: ...

    def send_usage(self, usage: Usage) -> None: ...

    def commands(self) -> AsyncIterator[CoreCommand]:
        """Core's commands in order; ends when the session ends."""
        ...

    async def aclose(self) -> None:
        """Flush queued reports (bounded), end the session and release it."""
        ...


CoreLinkFactory = Callable[[], CoreLink]


def _answer_mode(mode: str) -> Literal["voice", "context"]:
    return "context" if mode == "context" else "voice"


class GrpcCoreLink:
    """`CoreLink` over `MediaSessionService.Session` on a shared `grpc.aio` channel.

    One writer task owns `call.write` (gRPC allows one pending write) and sends a heartbeat
    when idle; one reader task turns responses into commands. If the stream fails, reports
    are dropped (logged once) and `commands()` ends: the call goes on, and core's reconciler
    settles whatever media could not report.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        internal_token: str,
        *,
        attach_timeout_s: float = 5.0,
        heartbeat_s: float = 15.0,
        close_timeout_s: float = 5.0,
        max_queued: int = 4096,
    ) -> None:
        self._stub = media_pb2_grpc.MediaSessionServiceStub(channel)
        self._metadata = ((INTERNAL_TOKEN_HEADER, internal_token),)
        self._attach_timeout_s = attach_timeout_s
        self._heartbeat_s = heartbeat_s
        self._close_timeout_s = close_timeout_s
        self._outbox: asyncio.Queue[media_pb2.SessionRequest | None] = asyncio.Queue(max_queued)
        self._commands: asyncio.Queue[CoreCommand | None] = asyncio.Queue()
        self._call: Any = None
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._log_extra: dict[str, str] = {}
        self._broken = False
        self._closing = False

    async def attach(self, call_id: str, call_sid: str, stream_sid: str, pod: str) -> CallTask:
        self._log_extra = {"call_id": call_id}
        call = self._stub.Session(metadata=self._metadata)
        self._call = call
        attach = media_pb2.SessionAttach(
            call_id=call_id, call_sid=call_sid, stream_sid=stream_sid, pod=pod
        )
        try:
            async with asyncio.timeout(self._attach_timeout_s):
                await call.write(media_pb2.SessionRequest(attach=attach))
                first = await call.read()
        except (TimeoutError, grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            call.cancel()
            raise CoreLinkError(f"core did not accept the session ({_why(exc)})") from None
        if not isinstance(first, media_pb2.SessionResponse) or not first.HasField("task"):
            call.cancel()
            raise CoreLinkError("core ended the session without a task")
        self._writer = asyncio.create_task(self._write_loop(), name="core-link-writer")
        self._reader = asyncio.create_task(self._read_loop(), name="core-link-reader")
        task = first.task
        return CallTask(
            call_id=task.call_id or call_id,
            brief=task.brief,
            language=task.language or "auto",
            kind=task.kind,
            parsed_slots=json_format.MessageToDict(task.parsed_slots),
            ask_user_mode=task.ask_user_mode or "any",
            call_sid=task.call_sid,
        )

    def send_transcript(self, line: Transcript) -> None:
        self._enqueue(
            media_pb2.SessionRequest(
                transcript=media_pb2.TranscriptLine(
                    speaker=line.speaker,
                    text=line.text,
                    final=line.final,
                    offset_ms=line.offset_ms,
                    source=line.source,
                )
            )
        )

    def ask_user(self, request: AskUser) -> None:
        self._enqueue(
            media_pb2.SessionRequest(
                ask_user=media_pb2.AskUserRequest(
                    request_id=request.request_id,
                    question=request.question,
                    options=list(request.options),
                    timeout_sec=request.timeout_sec,
                )
            )
        )

    def send_decision(self, decision: DecisionReport) -> None:
        pb = media_pb2.SupervisorDecision(
            kind=decision.kind, reason=decision.reason, action=decision.action
        )
        self._enqueue(media_pb2.SessionRequest(decision=pb))

    def send_signal(self, name: str) -> None:
        self._enqueue(media_pb2.SessionRequest(signal=media_pb2.ReservationSignal(name=name)))

    def send_outcome(self, outcome: Outcome) -> None:
        pb = media_pb2.CallOutcome(
            outcome=outcome.outcome,
            summary=outcome.summary,
            date_time=outcome.date_time,
            holder_name=outcome.holder_name,
            refusal_reason=outcome.refusal_reason,
            venue_name=outcome.venue_name,
            ending=outcome.ending,
            language=outcome.language,
            contact_phone=outcome.contact_phone,
        )
        if outcome.guests is not None:
            pb.guests = outcome.guests
        self._enqueue(media_pb2.SessionRequest(outcome=pb))

    def send_usage(self, usage: Usage) -> None:
        pb = media_pb2.ProviderUsage(**dataclasses.asdict(usage))
        self._enqueue(media_pb2.SessionRequest(usage=pb))

    async def commands(self) -> AsyncIterator[CoreCommand]:
        while (command := await self._commands.get()) is not None:
            yield command
        self._commands.put_nowait(None)  # the end stays visible to a later iteration

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        writer, reader = self._writer, self._reader
        try:
            if writer is not None and not writer.done():
                with contextlib.suppress(asyncio.QueueFull):
                    self._outbox.put_nowait(None)
                await asyncio.wait({writer}, timeout=self._close_timeout_s)
            if reader is not None and not reader.done():
                await asyncio.wait({reader}, timeout=self._close_timeout_s)
        finally:
            await cancel_and_wait(writer, reader)
            if self._call is not None:
                self._call.cancel()
            self._commands.put_nowait(None)

    def _enqueue(self, request: media_pb2.SessionRequest) -> None:
        if self._broken or self._closing or self._writer is None:
            return
        try:
            self._outbox.put_nowait(request)
        except asyncio.QueueFull:
            logger.warning("core link backlog full; report dropped", extra=self._log_extra)

    async def _write_loop(self) -> None:
        heartbeat = media_pb2.SessionRequest(heartbeat=media_pb2.SessionHeartbeat())
        try:
            while True:
                try:
                    async with asyncio.timeout(self._heartbeat_s):
                        request = await self._outbox.get()
                except TimeoutError:
                    request = heartbeat
                if request is None:
                    await self._call.done_writing()
                    return
                await self._call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            self._lose(exc)

    async def _read_loop(self) -> None:
        try:
            while (response := await self._call.read()) is not grpc.aio.EOF:
                kind = response.WhichOneof("kind")
                if kind == "answer":
                    a = response.answer
                    self._commands.put_nowait(
                        Answer(a.request_id, a.answer, _answer_mode(a.mode), a.timed_out)
                    )
                elif kind == "hang_up":
                    self._commands.put_nowait(HangUp(response.hang_up.reason or "core"))
            if not self._closing:
                self._lose(None)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            self._lose(exc)
        finally:
            self._commands.put_nowait(None)

    def _lose(self, exc: BaseException | None) -> None:
        if self._broken or self._closing:
            return
        self._broken = True
        reason = _why(exc) if exc is not None else "core ended the session"
        logger.warning("core link lost: %s", reason, extra=self._log_extra)


def _why(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details() or ''}"[:200]
    return type(exc).__name__
