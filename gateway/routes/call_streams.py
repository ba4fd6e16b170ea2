"""`/calls/{call_id}/…` routes whose replies are streams or files: SSE events, the
recording, the merged transcript.

Each SSE stream holds a gRPC stream to core for its whole life, so this gateway caps
how many it serves (`StreamSlots`, built once per app) and sends heartbeat comments
so proxies and clients can tell a quiet call from a dead connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
import orjson
from callagent.v1 import calls_pb2
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from common import metrics
from gateway import inputs, views
from gateway.credentials import credentials
from gateway.errors import error_body, from_rpc_error, http_error
from gateway.responses import JsonResponse
from gateway.stubs import Core

router = APIRouter(tags=["calls"])


def sse_frame(event: calls_pb2.CallEvent) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.event_id,
        event.type.encode(),
        event.data_json,
    )


class StreamSlots:
    """Caps concurrent SSE streams in this gateway process (each holds a gRPC stream)."""

    def __init__(self, limit: int, heartbeat_sec: float) -> None:
        self.limit = limit
        self.heartbeat_sec = heartbeat_sec
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        metrics.SSE_STREAMS.inc()
        return True

    def give_back(self) -> None:
        self.open -= 1
        metrics.SSE_STREAMS.dec()


async def _first_status(call: Any) -> grpc.aio.AioRpcError | None:
    """Wait until core either started the stream (owner check passed) or failed it."""
    await call.initial_metadata()
    if call.done():
        code = await call.code()
        if code != grpc.StatusCode.OK:
            return grpc.aio.AioRpcError(
                code,
                await call.initial_metadata(),
                await call.trailing_metadata(),
                await call.details(),
            )
    return None


def stream_slots(request: Request) -> StreamSlots:
    value: StreamSlots = request.app.state.sse_slots
    return value


Slots = Annotated[StreamSlots, Depends(stream_slots)]


@router.get(
    "/calls/{call_id}/events",
    summary="Realtime call event stream (Server-Sent Events)",
)
async def stream_call_events(
    call_id: str,
    core: Core,
    slots: Slots,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    x_gateway_context: Annotated[str | None, Header(alias="X-Gateway-Context")] = None,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
) -> Response:
    after = inputs.event_id(last_event_id) if last_event_id else 0
    metadata = credentials(x_gateway_context, x_api_key)
    # The contract's order: auth and ownership (core's first status) before the cap.
    call = core.calls.StreamCallEvents(
        calls_pb2.StreamCallEventsRequest(call_id=call_id, after_event_id=after),
        metadata=metadata,
    )
    try:
        failure = await _first_status(call)
    except BaseException:
        call.cancel()
        raise
    if failure is not None:
        return from_rpc_error(failure)
    if not slots.take():
        call.cancel()
        return http_error(
            503,
            "STREAM_LIMIT",
            "this gateway serves its maximum number of event streams; retry shortly",
        )

    async def frames() -> AsyncIterator[bytes]:
        reader = aiter(call)
        next_item: asyncio.Future[Any] | None = None
        try:
            while True:
                if next_item is None:
                    next_item = asyncio.ensure_future(anext(reader, None))
                done, _ = await asyncio.wait({next_item}, timeout=slots.heartbeat_sec)
                if not done:
                    yield b": ping\n\n"
                    continue
                item = next_item.result()
                next_item = None
                if item is None:
                    return
                yield sse_frame(item.event)
        except grpc.aio.AioRpcError as err:
            # The response has started: report in-band, then end the stream.
            # The contract's codes, as a JSON error body would carry them.
            _, error = error_body(err)
            yield b"event: error\ndata: %s\n\n" % orjson.dumps(error)
        finally:
            if next_item is not None:
                next_item.cancel()
            call.cancel()
            slots.give_back()

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/calls/{call_id}/recording",
    summary="Stream the call's mp3 recording (proxied through our Twilio creds)",
    responses={
        202: {
            "description": "Recording is still being processed by Twilio. Retry in a few seconds.",
            "content": {"application/json": {"example": {"status": "recording_pending"}}},
        }
    },
)
async def get_recording(
    call_id: str,
    core: Core,
    download: Annotated[
        bool,
        Query(
            description="When true, emit Content-Disposition: "
            "attachment so browsers/curl save the file as "
            "call_{id}.mp3."
        ),
    ] = False,
    api_key: str | None = None,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
    x_gateway_context: Annotated[str | None, Header(alias="X-Gateway-Context")] = None,
) -> Response:
    call = core.calls.StreamRecording(
        calls_pb2.StreamRecordingRequest(call_id=call_id),
        metadata=credentials(x_gateway_context, x_api_key or api_key),
    )
    try:
        first = await call.read()  # the header message, or grpc.aio.EOF
    except BaseException:
        call.cancel()
        raise
    if not isinstance(first, calls_pb2.StreamRecordingResponse) or first.pending:
        call.cancel()
        return JsonResponse({"status": "recording_pending"}, status_code=202)
    disposition = "attachment" if download else "inline"
    headers = {"Content-Disposition": f'{disposition}; filename="call_{call_id}.mp3"'}
    if first.HasField("content_length"):
        headers["Content-Length"] = str(first.content_length)

    async def chunks() -> AsyncIterator[bytes]:
        """Each chunk as core relays it from the carrier; never the whole file at once."""
        try:
            if first.chunk:
                yield first.chunk
            while isinstance(item := await call.read(), calls_pb2.StreamRecordingResponse):
                yield item.chunk  # read() only: grpc forbids mixing it with async for
        finally:
            call.cancel()

    return StreamingResponse(
        chunks(), media_type=first.content_type or "audio/mpeg", headers=headers
    )


@router.get(
    "/calls/{call_id}/transcript-merged",
    summary="Get the merged time-aligned transcript built post-call",
    responses={
        202: {
            "description": "Merger has not run yet.",
            "content": {"application/json": {"example": {"status": "merger_pending"}}},
        }
    },
)
async def get_transcript_merged(
    call_id: str,
    core: Core,
    x_gateway_context: Annotated[str | None, Header(alias="X-Gateway-Context")] = None,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
) -> Response:
    reply = await core.calls.GetMergedTranscript(
        calls_pb2.GetMergedTranscriptRequest(call_id=call_id),
        metadata=credentials(x_gateway_context, x_api_key),
    )
    if reply.pending:
        return JsonResponse({"status": "merger_pending"}, status_code=202)
    return JsonResponse(views.merged_transcript(reply.transcript))
