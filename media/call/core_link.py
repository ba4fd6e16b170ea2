"""The media side of a live call's link to core: one bidirectional session per call.

Core owns every rule and all state; media only reports what happens on the call and carries
out what core decides. The bridge talks to core through the `CoreLink` port: `attach()` once
when the first media stream of a call starts (core answers with the call's task), then
fire-and-forget reports (transcript lines, ask_user requests, supervisor decisions, reservation
signals, the outcome, provider usage) and one stream of commands back (answers to ask_user,
hang-up, the carrier's AMD result).

Reports never block the audio path: they are queued and written in order by the link's own
task, and `aclose()` flushes what is queued (bounded) before half-closing, so an outcome sent
just before hanging up still reaches core. A core restart does not lose the call: the link
re-attaches to any replica and replays what core has not acknowledged. `GrpcCoreLink` runs over
`MediaSessionService.Session` (metadata `x-internal-token`); tests and benchmarks use the
in-memory `tests.fakes.core_link.InMemoryCore` instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, Protocol

import grpc
from callagent.v1 import media_pb2, media_pb2_grpc
from google.protobuf import json_format

from common.aio import cancel_and_wait
from media.call import link_retry, replay_log

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


@dataclasses.dataclass(frozen=True, slots=True)
class AnsweredBy:
    """The carrier's answering-machine detection result, wherever its callback landed."""

    answered_by: str


CoreCommand = Answer | HangUp | AnsweredBy


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

    One runner task owns the session: a writer (gRPC allows one pending write; it sends a
    heartbeat when idle) and a reader that turns responses into commands and acks. When the
    stream breaks (core restarted or was killed), the runner re-opens it against any replica
    with the same attach (exponential backoff with jitter, `wait_for_ready`), then replays
    every report core has not acknowledged (`ReplayLog`; core applies each seq once) and
    carries on. Commands are acknowledged by id and a repeat is ignored, so one core re-sends
    after a re-attach is taken once. Only a refusal (unknown call, bad token) ends the
    session for good: reports are then dropped and `commands()` ends.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        internal_token: str,
        *,
        attach_timeout_s: float = 5.0,
        heartbeat_s: float = 15.0,
        close_timeout_s: float = 10.0,
        max_queued: int = 4096,
        retry_base_s: float = 0.1,
        retry_max_s: float = 1.0,
    ) -> None:
        self._stub = media_pb2_grpc.MediaSessionServiceStub(channel)
        self._metadata = ((INTERNAL_TOKEN_HEADER, internal_token),)
        self._attach_timeout_s = attach_timeout_s
        self._heartbeat_s = heartbeat_s
        self._close_timeout_s = close_timeout_s
        self._retry = (retry_base_s, retry_max_s)
        # Seqs start at the clock (µs): a later link for the same call (a new bridge) never
        # reuses one an earlier link had stored, which core would take for a replay.
        self._log = replay_log.ReplayLog(max_queued, first_seq=time.time_ns() // 1000)
        self._acks: list[int] = []  # command ids taken, still to acknowledge
        self._seen: set[int] = set()
        self._wake = asyncio.Event()  # something new for the writer
        self._commands: asyncio.Queue[CoreCommand | None] = asyncio.Queue()
        self._attach: media_pb2.SessionAttach | None = None
        self._call: Any = None
        self._replay = False  # core acknowledges reports (SessionTask.replay)
        self._runner: asyncio.Task[None] | None = None
        self._log_extra: dict[str, str] = {}
        self._broken = False
        self._closing = False
        self.reattached = 0  # sessions re-opened after a break (for logs and tests)

    async def attach(self, call_id: str, call_sid: str, stream_sid: str, pod: str) -> CallTask:
        self._log_extra = {"call_id": call_id}
        self._attach = media_pb2.SessionAttach(
            call_id=call_id, call_sid=call_sid, stream_sid=stream_sid, pod=pod
        )
        try:
            first = await self._first_open()
        except (TimeoutError, grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            raise CoreLinkError(
                f"core did not accept the session ({link_retry.why(exc)})"
            ) from None
        self._runner = asyncio.create_task(self._run(), name="core-link")
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
        """Send what is queued, replaying it on a re-attached session if core restarts
        meanwhile (within `close_timeout_s`), then half-close and wait for core's end."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        runner = self._runner
        try:
            if runner is not None and not runner.done():
                await asyncio.wait({runner}, timeout=self._close_timeout_s)
            if len(self._log) and not self._broken:
                logger.warning("core link closed with reports unsent", extra=self._log_extra)
        finally:
            await cancel_and_wait(runner)
            if self._call is not None:
                self._call.cancel()
            self._commands.put_nowait(None)

    def _enqueue(self, request: media_pb2.SessionRequest) -> None:
        if self._broken or self._closing or self._runner is None:
            return
        if not self._log.add(request):
            logger.warning("core link backlog full; report dropped", extra=self._log_extra)
            return
        self._wake.set()

    async def _first_open(self) -> media_pb2.SessionResponse:
        """The first attach, retried like a re-attach while its budget lasts when a core dies
        under it (UNAVAILABLE), so a call answered during a core restart is not hung up."""
        delays = link_retry.delays(*self._retry)
        deadline = time.monotonic() + self._attach_timeout_s
        while True:
            try:
                return await self._open()
            except grpc.aio.AioRpcError as exc:
                wait = next(delays)
                if exc.code() in link_retry.REFUSALS or time.monotonic() + wait >= deadline:
                    raise
                logger.info(
                    "core link attach failed: %s", link_retry.why(exc), extra=self._log_extra
                )
            await asyncio.sleep(wait)

    async def _open(self) -> media_pb2.SessionResponse:
        """Open a session and attach; the first response (the task) is returned."""
        call = self._stub.Session(metadata=self._metadata, wait_for_ready=True)
        self._call = call
        try:
            async with asyncio.timeout(self._attach_timeout_s):
                await call.write(media_pb2.SessionRequest(attach=self._attach))
                first = await call.read()
        except BaseException:
            call.cancel()
            raise
        if not isinstance(first, media_pb2.SessionResponse) or not first.HasField("task"):
            call.cancel()
            raise CoreLinkError("core ended the session without a task")
        self._replay = first.task.replay
        return first

    async def _run(self) -> None:
        """Serve the session; re-open it whenever it breaks, until it ends cleanly."""
        delays = link_retry.delays(*self._retry)
        while True:
            served_at = time.monotonic()
            if await self._serve(self._call):
                return
            if time.monotonic() - served_at >= link_retry.STEADY_S:
                delays = link_retry.delays(*self._retry)  # it held a while: retry at once
            while True:
                await asyncio.sleep(next(delays))
                try:
                    await self._open()
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in link_retry.REFUSALS:
                        self._give_up(exc)
                        return
                    logger.info(
                        "core link re-attach failed: %s", link_retry.why(exc), extra=self._log_extra
                    )
                except (TimeoutError, CoreLinkError, asyncio.InvalidStateError) as exc:
                    logger.info(
                        "core link re-attach failed: %s", link_retry.why(exc), extra=self._log_extra
                    )
            self.reattached += 1
            logger.info("core link re-attached", extra=self._log_extra)

    async def _serve(self, call: Any) -> bool:
        """One stream until it ends: True when it ended cleanly (we half-closed and core
        acknowledged everything), False when it broke."""
        writer = asyncio.create_task(self._write(call), name="core-link-writer")
        reader = asyncio.create_task(self._read(call), name="core-link-reader")
        try:
            done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            if writer in done and writer.exception() is None:
                await asyncio.wait({reader})  # half-closed: core finishes and ends the stream
            if reader.done():
                exc = reader.exception()
                clean = exc is None and reader.result()
            else:
                exc, clean = writer.exception(), False
        finally:
            await cancel_and_wait(writer, reader)
        if not clean:
            self._lost(exc)
            call.cancel()
        return clean

    async def _write(self, call: Any) -> None:
        heartbeat = media_pb2.SessionRequest(heartbeat=media_pb2.SessionHeartbeat())
        sent = 0  # a new stream replays everything core has not acknowledged
        while True:
            self._wake.clear()
            acks, self._acks = self._acks, []
            for command_id in acks:
                ack = media_pb2.CommandAck(command_id=command_id)
                await call.write(media_pb2.SessionRequest(command_ack=ack))
            for request in self._log.after(sent):
                await call.write(request)
                sent = request.seq
                if not self._replay:  # a core that acknowledges nothing gets it once
                    self._log.ack(sent)
            if self._closing and not self._acks and not self._log.after(sent):
                await call.done_writing()
                return
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    await self._wake.wait()
            except TimeoutError:
                await call.write(heartbeat)

    async def _read(self, call: Any) -> bool:
        while (response := await call.read()) is not grpc.aio.EOF:
            kind = response.WhichOneof("kind")
            if kind == "ack":
                self._log.ack(response.ack.seq)
                continue
            if kind == "answer":
                a = response.answer
                command: CoreCommand = Answer(
                    a.request_id, a.answer, _answer_mode(a.mode), a.timed_out
                )
            elif kind == "hang_up":
                command = HangUp(response.hang_up.reason or "core")
            elif kind == "answered_by":
                command = AnsweredBy(response.answered_by.answered_by)
            else:
                continue
            if self._take(response.command_id):
                self._commands.put_nowait(command)
        # Core ends the stream after media half-closed; any other end is a break.
        return self._closing and not len(self._log)

    def _take(self, command_id: int) -> bool:
        """Acknowledge a durable command; False for one already taken (a re-send)."""
        if command_id == 0:
            return True
        self._acks.append(command_id)
        self._wake.set()
        if command_id in self._seen:
            return False
        self._seen.add(command_id)
        return True

    def _lost(self, exc: BaseException | None) -> None:
        reason = link_retry.why(exc) if exc is not None else "core ended the session"
        logger.warning("core link lost, re-attaching: %s", reason, extra=self._log_extra)

    def _give_up(self, exc: BaseException) -> None:
        self._broken = True
        logger.warning("core link refused: %s", link_retry.why(exc), extra=self._log_extra)
        self._commands.put_nowait(None)
