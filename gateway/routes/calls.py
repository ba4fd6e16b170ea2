"""`/calls*` request/reply routes: start, list, get, answer, cancel, via core's CallService.

A started call is 201 with the call, or 202 with its place in the dial queue when
core queued it. The streamed replies of a call (events, recording, merged
transcript) live in `gateway.routes.call_streams`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from callagent.v1 import calls_pb2
from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from google.protobuf import struct_pb2

from gateway import inputs, schemas, views
from gateway.credentials import Creds
from gateway.responses import JsonResponse
from gateway.stubs import Core

router = APIRouter(tags=["calls"])


@router.post(
    "/calls",
    summary="Start an AI voice call",
    status_code=201,
    response_model=schemas.StartCallResponse,
    responses={
        202: {
            "model": schemas.QueuedCallResponse,
            "description": "Call queued (call_queue_enabled). The drainer "
            "dials it later; poll GET /calls/{call_id}.",
        }
    },
)
async def start_call(
    body: schemas.StartCallBody,
    creds: Creds,
    core: Core,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    slots = None
    if body.parsed_slots is not None:
        slots = struct_pb2.Struct()
        slots.update(body.parsed_slots)
    reply = await core.calls.StartCall(
        calls_pb2.StartCallRequest(
            target_phone=body.target_phone,
            brief=body.brief,
            language=body.language,
            kind=body.kind.value,
            parsed_slots=slots,
            ask_user_mode=body.ask_user_mode,
            request_id=idempotency_key,
        ),
        metadata=creds,
    )
    if reply.queued:
        return JsonResponse(
            {
                "call_id": reply.call.call_id,
                "queue_id": reply.queue_id,
                "position": reply.position,
                "status": reply.call.status,
            },
            status_code=202,
        )
    return JsonResponse(
        {
            "call": views.call(reply.call),
            "task_id": reply.task_id,
            "credits_reserved": reply.credits_reserved,
            "owner_pod": reply.owner_pod if reply.HasField("owner_pod") else None,
        },
        status_code=201,
    )


@router.get(
    "/calls",
    summary="List the customer's calls (most recent first)",
    response_model=list[schemas.CallDTO],
)
async def list_calls(
    creds: Creds,
    core: Core,
    limit: int = 100,
    since: Annotated[
        dt.datetime | None, Query(description="Only calls created at or after this instant.")
    ] = None,
) -> Response:
    reply = await core.calls.ListCalls(
        calls_pb2.ListCallsRequest(
            limit=inputs.int32("limit", limit, "INVALID_ARGUMENT_LIMIT"),
            since=inputs.timestamp("since", since),
        ),
        metadata=creds,
    )
    return JsonResponse([views.call(c) for c in reply.calls])


@router.get("/calls/{call_id}", summary="Get a single call by id", response_model=schemas.CallDTO)
async def get_call(call_id: str, creds: Creds, core: Core) -> Response:
    reply = await core.calls.GetCall(calls_pb2.GetCallRequest(call_id=call_id), metadata=creds)
    return JsonResponse(views.call(reply.call))


@router.post(
    "/calls/{call_id}/answer",
    summary="Async webhook callback for an ask_user pending on this call",
    response_model=schemas.AnswerResponse,
)
async def submit_answer(
    call_id: str, body: schemas.AnswerBody, creds: Creds, core: Core
) -> Response:
    reply = await core.calls.SubmitAnswer(
        calls_pb2.SubmitAnswerRequest(
            call_id=call_id,
            answer=body.answer,
            request_id=body.request_id or "",
            mode=body.mode,
        ),
        metadata=creds,
    )
    return JsonResponse({"delivered": reply.delivered})


@router.post(
    "/calls/{call_id}/cancel",
    summary="Cancel a call that hasn't completed",
    response_model=schemas.CancelResponse,
)
async def cancel_call(call_id: str, creds: Creds, core: Core) -> Response:
    reply = await core.calls.CancelCall(
        calls_pb2.CancelCallRequest(call_id=call_id), metadata=creds
    )
    return JsonResponse({"cancelled": reply.cancelled})
