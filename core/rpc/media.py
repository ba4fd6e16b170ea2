"""MediaSessionService: the live link between a call's media pipeline and core.

Media opens one Session per call and sends `attach` first; core answers with the task
(brief, language, slots, ask_user mode), records the call's owner pod, and from then on
writes what media reports (transcript, decisions, signals, outcome, provider usage) and
pushes what the customer decides (answers, timeouts, hang-ups) back down the same stream.
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
from core.app import call_record, sessions, usage
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
    ) -> None:
        self._calls = calls
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
        queue = self._hub.attach(call_id)
        work: set[asyncio.Task[None]] = set()
        reader = asyncio.create_task(self._consume(call_id, request_iterator, work))
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
                )
            )
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    response = await self._command(getter.result())
                    if response is not None:
                        yield response
                else:
                    getter.cancel()
                    reader.result()  # media closed its side (or failed): surface errors
                    return
        finally:
            last = self._hub.detach(call_id, queue)
            await cancel_and_wait(reader, *work)
            if last:
                await self._close_questions(call_id)

    async def _close_questions(self, call_id: str) -> None:
        """No session waits for the call's open questions any more: an answer to one
        must be `delivered=false`, not silently lost."""
        try:
            await self._ask.cancel_pending(call_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("open questions not closed", extra={"call_id": call_id})

    async def _command(self, command: sessions.Command) -> media_pb2.SessionResponse | None:
        if command.kind == "hang_up":
            return media_pb2.SessionResponse(hang_up=media_pb2.HangUpCommand(reason=command.reason))
        row = await self._ask.answer_of(command.request_id)
        if row is None:
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
    ) -> None:
        pool = self._calls.pool
        async for request in requests:
            kind = request.WhichOneof("kind")
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
                    await call_record.add_transcript(pool, call_id, line)
                elif kind == "ask_user":
                    # Stored in arrival order here (FIFO answers depend on it); delivery to
                    # outside channels and the timeout run in the background.
                    ask = request.ask_user
                    timeout = ask.timeout_sec or self._default_timeout
                    expires = asyncio.get_running_loop().time() + timeout
                    delivery = await self._ask.record(
                        call_id, ask.request_id, ask.question, list(ask.options), timeout
                    )
                    job = asyncio.create_task(
                        self._deliver_and_time_out(call_id, ask.request_id, delivery, expires)
                    )
                    work.add(job)
                    job.add_done_callback(work.discard)
                elif kind == "decision":
                    d = request.decision
                    await call_record.add_decision(
                        pool, call_id, {"kind": d.kind, "reason": d.reason, "action": d.action}
                    )
                elif kind == "signal":
                    await call_record.add_signal(pool, call_id, request.signal.name)
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
                        call_record.record_outcome(pool, call_id, outcome, self._analyst)
                    )
            except CallagentError as err:
                log.warning(
                    "session message refused", extra={"call_id": call_id, "reason": err.reason}
                )

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
