"""Routes whose replies are streams or files: SSE events, the recording, the merged transcript."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
import orjson
from callagent.v1 import calls_pb2
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from google.protobuf import json_format

from gateway.responses import JsonResponse


def _stubs(request: Request) -> Any:
    return request.app.state.stubs


def _creds(context: str | None, key: str | None) -> tuple[tuple[str, str], ...]:
    out = []
    if context is not None:
        out.append(("x-gateway-context", context))
    if key is not None:
        out.append(("x-api-key", key))
    return tuple(out)


def sse_frame(event: calls_pb2.CallEvent) -> bytes:
    data = orjson.dumps(json_format.MessageToDict(event.payload))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.event_id, event.type.encode(), data)


def add_routes(app: FastAPI) -> None:
    @app.get(
        "/calls/{call_id}/events",
        tags=["calls"],
        summary="Realtime call event stream (Server-Sent Events)",
    )
    async def stream_call_events(
        call_id: str,
        request: Request,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        x_gateway_context: Annotated[str | None, Header(alias="X-Gateway-Context")] = None,
        x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
    ) -> Response:
        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        call = _stubs(request).calls.StreamCallEvents(
            calls_pb2.StreamCallEventsRequest(call_id=call_id, after_event_id=after),
            metadata=_creds(x_gateway_context, x_api_key),
        )
        first = await call.read()  # surfaces auth / not-found errors before the 200
        if first is grpc.aio.EOF:
            return Response(b"", media_type="text/event-stream")

        async def frames() -> AsyncIterator[bytes]:
            try:
                yield sse_frame(first.event)
                async for item in call:
                    yield sse_frame(item.event)
            finally:
                call.cancel()

        return StreamingResponse(frames(), media_type="text/event-stream")

    @app.get(
        "/calls/{call_id}/recording",
        tags=["calls"],
        summary="Stream the call's mp3 recording (proxied through our Twilio creds)",
        responses={
            202: {
                "description": "Recording is still being processed by Twilio. "
                "Retry in a few seconds.",
                "content": {"application/json": {"example": {"status": "recording_pending"}}},
            }
        },
    )
    async def get_recording(
        call_id: str,
        request: Request,
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
        call = _stubs(request).calls.StreamRecording(
            calls_pb2.StreamRecordingRequest(call_id=call_id),
            metadata=_creds(x_gateway_context, x_api_key or api_key),
        )
        first = await call.read()
        if first is grpc.aio.EOF or first.pending:
            call.cancel()
            return JsonResponse({"status": "recording_pending"}, status_code=202)
        disposition = "attachment" if download else "inline"

        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield first.chunk
                async for item in call:
                    yield item.chunk
            finally:
                call.cancel()

        return StreamingResponse(
            chunks(),
            media_type=first.content_type or "audio/mpeg",
            headers={"Content-Disposition": f'{disposition}; filename="call_{call_id}.mp3"'},
        )

    @app.get(
        "/calls/{call_id}/transcript-merged",
        tags=["calls"],
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
        request: Request,
        x_gateway_context: Annotated[str | None, Header(alias="X-Gateway-Context")] = None,
        x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
    ) -> Response:
        reply = await _stubs(request).calls.GetMergedTranscript(
            calls_pb2.GetMergedTranscriptRequest(call_id=call_id),
            metadata=_creds(x_gateway_context, x_api_key),
        )
        if reply.pending:
            return JsonResponse({"status": "merger_pending"}, status_code=202)
        return JsonResponse(json_format.MessageToDict(reply.transcript))
