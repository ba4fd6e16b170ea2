"""CallService (public) and TelephonyEventService (internal, from media)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import asyncpg
import grpc
import orjson
from callagent.v1 import calls_pb2, calls_pb2_grpc, telephony_pb2, telephony_pb2_grpc
from google.protobuf import json_format

from core.app import calls, events, merge_jobs, provider_events, recordings, transcripts
from core.app.ask_user import AskUser
from core.domain import idempotency as idempotency_rules
from core.domain import provider_costs, tasks
from core.domain.errors import not_found
from core.rpc.convert import from_ts, struct, ts
from core.rpc.interceptor import current_principal

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def call_message(
    row: asyncpg.Record, *, details: bool = False, prices: provider_costs.Prices | None = None
) -> calls_pb2.Call:
    message = calls_pb2.Call(
        call_id=row["call_id"],
        customer_id=row["customer_id"],
        task_id=row["task_id"],
        target_phone=row["target_phone"],
        language=row["language"],
        status=row["status"],
        call_sid=row["call_sid"],
        started_at=ts(row["started_at"]),
        ended_at=ts(row["ended_at"]),
        duration_sec=row["duration_sec"],
        outcome_type=row["outcome_type"],
        outcome_summary=row["outcome_summary"],
        outcome_charge_cents=row["outcome_charge_cents"],
        created_at=ts(row["created_at"]),
        has_recording=row["has_recording"],
        recording_url=recordings.recording_path(row["call_id"]) if row["has_recording"] else None,
        reservation_signals=row["reservation_signals"],
        owner_pod=row["owner_pod"],
    )
    if details:
        message.details_included = True
        message.transcript_full_json = orjson.dumps(row["transcript_full"])
        message.supervisor_decisions_json = orjson.dumps(row["supervisor_decisions"])
        if prices is not None:
            cost = provider_costs.breakdown(row["usage"], row["duration_sec"], prices)
            message.cost_breakdown.CopyFrom(cost_message(cost))
    return message


def cost_message(cost: provider_costs.CostBreakdown) -> calls_pb2.CostBreakdown:
    return calls_pb2.CostBreakdown(
        lines=[calls_pb2.CostLine(**dataclasses.asdict(line)) for line in cost.lines],
        total_usd=cost.total_usd,
        currency=cost.currency,
    )


def event_message(event: events.Event) -> calls_pb2.CallEvent:
    return calls_pb2.CallEvent(
        event_id=event.event_id,
        call_id=event.call_id,
        type=event.type,
        data_json=event.data_json,
        created_at=ts(event.created_at),
    )


def start_response(started: calls.Started) -> calls_pb2.StartCallResponse:
    return calls_pb2.StartCallResponse(
        call=call_message(started.call),
        task_id=started.task_id,
        credits_reserved=started.credits_reserved,
        owner_pod=started.call["owner_pod"],
        queued=started.queued,
        queue_id=started.queue_id,
        position=started.position,
    )


class CallServicer(calls_pb2_grpc.CallServiceServicer):
    def __init__(
        self,
        service: calls.CallService,
        broker: events.EventBroker,
        ask_user: AskUser,
        *,
        close_after_outcome_sec: float,
        max_stream_sec: float,
        transcript_wait_sec: float = 0.0,
        prices: provider_costs.Prices | None = None,
    ) -> None:
        self._calls = service
        self._prices = prices or provider_costs.Prices()
        self._broker = broker
        self._ask = ask_user
        self._linger = close_after_outcome_sec
        self._cap = max_stream_sec
        self._transcript_wait = transcript_wait_sec

    async def StartCall(self, request: calls_pb2.StartCallRequest, context: Ctx) -> Any:
        customer_id = current_principal().customer_id
        start = tasks.StartRequest(
            target_phone=request.target_phone,
            brief=request.brief,
            language=request.language or "auto",
            kind=request.kind or "other",
            parsed_slots=json_format.MessageToDict(request.parsed_slots)
            if request.HasField("parsed_slots")
            else None,
            ask_user_mode=request.ask_user_mode or "any",
        )
        key = idempotency_rules.make_key(
            customer_id,
            request.request_id if request.HasField("request_id") else None,
            "start_call",
            dataclasses.asdict(start),
        )
        idem = None
        if key is not None:
            idem = calls.Idempotent(key, lambda s: start_response(s).SerializeToString())
        result = await self._calls.start(customer_id, start, idem)
        if isinstance(result, calls.Replay):
            replay = calls_pb2.StartCallResponse.FromString(result.response)
            replay.replayed = True
            return replay
        return start_response(result)

    async def ListCalls(self, request: calls_pb2.ListCallsRequest, context: Ctx) -> Any:
        rows = await self._calls.list_for(
            current_principal().customer_id,
            request.limit if request.HasField("limit") else None,
            from_ts(request.since, request.HasField("since")),
        )
        return calls_pb2.ListCallsResponse(calls=[call_message(r) for r in rows])

    async def GetCall(self, request: calls_pb2.GetCallRequest, context: Ctx) -> Any:
        row = await self._calls.get_for(current_principal().customer_id, request.call_id)
        return calls_pb2.GetCallResponse(call=call_message(row, details=True, prices=self._prices))

    async def CancelCall(self, request: calls_pb2.CancelCallRequest, context: Ctx) -> Any:
        cancelled = await self._calls.cancel(current_principal().customer_id, request.call_id)
        return calls_pb2.CancelCallResponse(cancelled=cancelled)

    async def SubmitAnswer(self, request: calls_pb2.SubmitAnswerRequest, context: Ctx) -> Any:
        delivered = await self._ask.submit(
            current_principal().customer_id,
            request.call_id,
            request.answer,
            request.request_id or None,
            request.mode or "voice",
        )
        return calls_pb2.SubmitAnswerResponse(delivered=delivered)

    async def StreamCallEvents(
        self, request: calls_pb2.StreamCallEventsRequest, context: Ctx
    ) -> AsyncIterator[calls_pb2.StreamCallEventsResponse]:
        """Backfill then live tail, until the stream cap at the latest. After the outcome
        event it lingers `close_after_outcome_sec`, unless the call's merged transcript is
        still being built: then it stays (up to `transcript_wait_sec`) for
        `transcript_ready` and lingers after that. A reader resuming at or past the
        outcome (Last-Event-ID) gets the same rule, counted from its reconnect: otherwise
        it would wait for an outcome that never comes again."""
        call_id = request.call_id
        await self._calls.get_for(current_principal().customer_id, call_id)
        pool = self._calls.pool
        past_outcome = await events.outcome_seen(pool, call_id, request.after_event_id)
        await context.send_initial_metadata(())  # the owner check passed: start streaming
        loop = asyncio.get_running_loop()
        cap = loop.time() + self._cap

        async def after_outcome() -> float:
            wait = self._transcript_wait if await merge_jobs.pending(pool, call_id) else 0
            return min(cap, loop.time() + (wait or self._linger))

        deadline = await after_outcome() if past_outcome else cap
        stream = events.follow(self._broker, pool, call_id, request.after_event_id)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(stream)
                except TimeoutError:
                    return
                yield calls_pb2.StreamCallEventsResponse(event=event_message(event))
                if event.type == "outcome":
                    deadline = min(deadline, await after_outcome())
                elif event.type == "transcript_ready":
                    deadline = min(deadline, loop.time() + self._linger)
        finally:
            await stream.aclose()

    async def StreamRecording(
        self, request: calls_pb2.StreamRecordingRequest, context: Ctx
    ) -> AsyncIterator[calls_pb2.StreamRecordingResponse]:
        """Admin-only; anyone else gets the same NOT_FOUND as for a missing call.

        The first message carries the carrier's content type and length, then each chunk
        goes on as the carrier delivers it: the recording is never held whole in memory.
        """
        if not current_principal().is_admin:
            raise not_found("call")
        async with self._calls.open_recording(request.call_id) as media:
            if media is None:
                yield calls_pb2.StreamRecordingResponse(pending=True)
                return
            yield calls_pb2.StreamRecordingResponse(
                content_type=media.content_type, content_length=media.content_length
            )
            async for chunk in media.chunks:
                yield calls_pb2.StreamRecordingResponse(chunk=chunk)

    async def GetMergedTranscript(
        self, request: calls_pb2.GetMergedTranscriptRequest, context: Ctx
    ) -> Any:
        """`pending` while the call is live or its merge job runs; then the merge."""
        merged = await transcripts.merged_for(
            self._calls.pool, current_principal().customer_id, request.call_id
        )
        if merged is None:
            return calls_pb2.GetMergedTranscriptResponse(pending=True)
        return calls_pb2.GetMergedTranscriptResponse(transcript=struct(merged))


def _opt(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


class TelephonyEventServicer(telephony_pb2_grpc.TelephonyEventServiceServicer):
    def __init__(
        self, service: calls.CallService, on_recording: Callable[[], None] | None = None
    ) -> None:
        self._calls = service
        self._on_recording = on_recording  # a stored recording lets its merge run now

    async def ReportTelephonyEvent(
        self, request: telephony_pb2.ReportTelephonyEventRequest, context: Ctx
    ) -> Any:
        applied = await provider_events.apply_provider_event(
            self._calls,
            provider_events.ProviderEvent(
                kind=request.kind,
                call_sid=request.call_sid,
                call_id=request.call_id,
                status=request.status,
                duration_sec=_opt(request, "duration_sec"),
                answered_by=_opt(request, "answered_by"),
                recording_sid=_opt(request, "recording_sid"),
                recording_url=_opt(request, "recording_url"),
                recording_duration_sec=_opt(request, "recording_duration_sec"),
                recording_status=_opt(request, "recording_status"),
            ),
        )
        if applied and request.kind == "recording" and self._on_recording is not None:
            self._on_recording()
        return telephony_pb2.ReportTelephonyEventResponse(applied=applied)
