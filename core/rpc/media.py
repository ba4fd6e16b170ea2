"""MediaSessionService: the live link between a call's media pipeline and core.

Media opens one Session per call and sends `attach` first; core answers with the task
(brief, language, slots, ask_user mode), records the call's owner pod, and from then on
writes what media reports (transcript, decisions, signals, outcome, provider usage) and
pushes what the customer decides (answers, timeouts, hang-ups) and carrier AMD results back
down the same stream. When core restarts, media re-attaches here (any replica) with the same
attach: reports are applied once each by (call_id, seq) and acknowledged, commands are
durable rows re-sent until media acknowledges them, and open questions are timed again.

When a session ends while its call is not over, the media pod may be gone: it is handed to
`core.app.lost_sessions`, which hangs the call up and settles it unless media re-attaches or
the call ends within the grace. Every end is handed over, not only a broken stream: gRPC
does not tell a dead peer from a half-close (a SIGKILLed media process often reads here as
a clean end of the request stream). A session whose SID is not the call's (a stream media
refuses) is not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import asyncpg
import grpc
from callagent.v1 import media_pb2, media_pb2_grpc

from common import logs
from common.aio import cancel_and_wait, finish_even_if_cancelled
from core.app import call_record, lost_sessions, sessions, usage
from core.app.ask_user import AskUser
from core.app.calls import CallService
from core.app.outcome_verification import Analyst
from core.domain.errors import CallagentError
from core.rpc.convert import struct

log = logging.getLogger(__name__)

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class MediaSessionServicer(media_pb2_grpc.MediaSessionServiceServicer):
    def __init__(
        self,
        calls: CallService,
        ask_user: AskUser,
        hub: sessions.SessionHub,
        timeout_sec: int,
        analyst: Analyst | None = None,
        lost: lost_sessions.LostSessions | None = None,
    ) -> None:
        self._calls = calls
        self._lost = lost
        self._analyst = analyst
        self._ask = ask_user
        self._hub = hub
        self._default_timeout = timeout_sec

    async def Session(
        self, request_iterator: AsyncIterator[media_pb2.SessionRequest], context: Ctx
    ) -> AsyncIterator[media_pb2.SessionResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("kind") != "attach":
            raise CallagentError("INVALID_ARGUMENT_FIELD", "a session must start with attach")
        attach = first.attach
        task = await call_record.attach_session(
            self._calls.pool, attach.call_id, attach.pod, attach.call_sid
        )
        call_id = attach.call_id
        logs.bind(call_id=call_id, customer_id=task["customer_id"])  # on every line of it
        wake = self._hub.attach(call_id)
        out: asyncio.Queue[tuple[media_pb2.SessionResponse, int]] = asyncio.Queue()
        work: set[asyncio.Task[None]] = set()
        reader = asyncio.create_task(self._consume(call_id, request_iterator, work, out))
        commander = asyncio.create_task(self._send_commands(call_id, wake, out))
        clean = False
        the_calls_sid = (task["call_sid"] or "") in ("", attach.call_sid)
        try:
            yield media_pb2.SessionResponse(
                task=media_pb2.SessionTask(
                    call_id=call_id,
                    brief=task["brief"],
                    language=task["language"],
                    kind=task["kind"],
                    parsed_slots=struct(task["parsed_slots"]),
                    ask_user_mode=task["ask_user_mode"],
                    call_sid=task["call_sid"] or "",
                    replay=True,
                )
            )
            await self._time_open_questions(call_id, work)
            while True:
                getter = asyncio.ensure_future(out.get())
                done, _ = await asyncio.wait(
                    {getter, reader, commander}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    response, command_id = getter.result()
                    yield response
                    if command_id:
                        await sessions.mark_delivered(self._calls.pool, command_id)
                    continue
                getter.cancel()
                if commander in done:
                    commander.result()  # the database failed: media re-attaches elsewhere
                reader.result()  # media closed its side (or failed): surface errors
                while not out.empty():  # the last acks, so media knows all was stored
                    response, _ = out.get_nowait()
                    if response.HasField("ack"):
                        yield response
                clean = True
                return
        finally:
            if the_calls_sid and self._lost is not None:
                # First, and without awaiting: a cancelled RPC may be cancelled again.
                self._lost.ended(call_id, task["media_session_seq"])
            last = self._hub.detach(call_id, wake)
            await cancel_and_wait(reader, commander, *work)
            # Only media ending the session closes the call's questions: a session cut by
            # a core restart re-attaches, and its questions and answers carry on.
            if last and clean:
                await self._close_questions(call_id)

    async def _close_questions(self, call_id: str) -> None:
        """No session waits for the call's open questions any more: an answer to one
        must be `delivered=false`, not silently lost."""
        try:
            await self._ask.cancel_pending(call_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("open questions not closed", extra={"call_id": call_id})

    async def _time_open_questions(self, call_id: str, work: set[asyncio.Task[None]]) -> None:
        """Questions asked before a re-attach time out on this session (the one that timed
        them may be gone with its replica)."""
        now = asyncio.get_running_loop().time()
        for request_id, left_sec in await self._ask.pending_of(call_id):
            job = asyncio.create_task(
                self._deliver_and_time_out(call_id, request_id, None, now + left_sec)
            )
            work.add(job)
            job.add_done_callback(work.discard)

    async def _send_commands(
        self,
        call_id: str,
        wake: asyncio.Event,
        out: asyncio.Queue[tuple[media_pb2.SessionResponse, int]],
    ) -> None:
        """Every command media has not acknowledged, once per session, in id order. Not
        "ids above the last sent": ids are drawn before commit, so a smaller one can commit
        later."""
        pool = self._calls.pool
        sent: set[int] = set()
        while True:
            await wake.wait()
            wake.clear()
            for command_id, command in await sessions.open_commands(pool, call_id):
                if command_id in sent:
                    continue
                sent.add(command_id)
                response = await self._command(command)
                if response is None:  # nothing to say (the question is gone): done with it
                    await sessions.acknowledge(pool, call_id, command_id)
                    continue
                response.command_id = command_id
                out.put_nowait((response, command_id))

    async def _command(self, command: sessions.Command) -> media_pb2.SessionResponse | None:
        if command.kind == "hang_up":
            return media_pb2.SessionResponse(hang_up=media_pb2.HangUpCommand(reason=command.reason))
        if command.kind == "answered_by":
            return media_pb2.SessionResponse(
                answered_by=media_pb2.AnsweredByCommand(answered_by=command.answered_by)
            )
        row = await self._ask.answer_of(command.request_id)
        if row is None or row["status"] not in ("answered", "timed_out"):
            return None
        return media_pb2.SessionResponse(
            answer=media_pb2.AskUserAnswer(
                request_id=row["request_id"],
                answer=row["answer"] or "",
                mode=row["mode"] or "",
                timed_out=row["status"] == "timed_out",
            )
        )

    async def _consume(
        self,
        call_id: str,
        requests: AsyncIterator[media_pb2.SessionRequest],
        work: set[asyncio.Task[None]],
        out: asyncio.Queue[tuple[media_pb2.SessionResponse, int]],
    ) -> None:
        pool = self._calls.pool
        async for request in requests:
            kind = request.WhichOneof("kind")
            seq = request.seq
            try:
                if kind == "transcript":
                    t = request.transcript
                    line = {
                        "speaker": t.speaker,
                        "text": t.text,
                        "final": t.final,
                        "offset_ms": t.offset_ms,
                        "source": t.source,
                    }
                    await call_record.add_transcript(pool, call_id, line, seq)
                elif kind == "ask_user":
                    # Stored in arrival order here (FIFO answers depend on it); delivery to
                    # outside channels and the timeout run in the background.
                    ask = request.ask_user
                    timeout = ask.timeout_sec or self._default_timeout
                    expires = asyncio.get_running_loop().time() + timeout
                    delivery = await self._ask.record(
                        call_id, ask.request_id, ask.question, list(ask.options), timeout, seq
                    )
                    if delivery is not None:  # None: a replay, asked and routed already
                        job = asyncio.create_task(
                            self._deliver_and_time_out(call_id, ask.request_id, delivery, expires)
                        )
                        work.add(job)
                        job.add_done_callback(work.discard)
                elif kind == "decision":
                    d = request.decision
                    await call_record.add_decision(
                        pool, call_id, {"kind": d.kind, "reason": d.reason, "action": d.action}, seq
                    )
                elif kind == "signal":
                    await call_record.add_signal(pool, call_id, request.signal.name, seq)
                elif kind == "usage":
                    u = request.usage
                    totals = {f: getattr(u, f) for f in usage.LIVE_FIELDS}
                    await usage.record_live(pool, call_id, totals)
                elif kind == "outcome":
                    o = request.outcome
                    outcome = {
                        "outcome": o.outcome,
                        "summary": o.summary,
                        "date_time": o.date_time,
                        "guests": o.guests if o.HasField("guests") else None,
                        "holder_name": o.holder_name,
                        "refusal_reason": o.refusal_reason,
                        "venue_name": o.venue_name,
                        "ending": o.ending,
                        "language": o.language,
                        "contact_phone": o.contact_phone,
                    }
                    # The model may take seconds; media closing its side (or the RPC being
                    # cancelled) meanwhile must not lose the call's outcome.
                    await finish_even_if_cancelled(
                        call_record.record_outcome(
                            pool,
                            call_id,
                            outcome,
                            self._analyst,
                            seq,
                            rate_cents_per_minute=self._calls.policy.rate_cents_per_minute,
                        )
                    )
                elif kind == "command_ack":
                    await sessions.acknowledge(pool, call_id, request.command_ack.command_id)
            except CallagentError as err:
                log.warning(
                    "session message refused", extra={"call_id": call_id, "reason": err.reason}
                )
            if seq > 0:  # applied, a replay, or refused: media may forget it either way
                out.put_nowait((media_pb2.SessionResponse(ack=media_pb2.ReportAck(seq=seq)), 0))

    async def _deliver_and_time_out(
        self,
        call_id: str,
        request_id: str,
        delivery: Callable[[], Awaitable[None]] | None,
        expires: float,
    ) -> None:
        if delivery is not None:
            await delivery()
        await asyncio.sleep(max(0.0, expires - asyncio.get_running_loop().time()))
        if await self._ask.expire(request_id):
            await sessions.publish(
                self._calls.pool,
                sessions.Command(call_id=call_id, kind="answer", request_id=request_id),
            )
