"""The public REST/SSE gateway: the contract's routes mapped 1:1 onto core's gRPC services.

No business rule lives here. Each route turns headers into gRPC metadata, the body
into a request message, and the reply (or the ErrorInfo of a failure) into the
contract's JSON. One gRPC channel to core is shared by all requests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
import orjson
from callagent.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    bookings_pb2,
    bookings_pb2_grpc,
    calls_pb2,
    calls_pb2_grpc,
    skills_pb2,
    skills_pb2_grpc,
)
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import Response
from google.protobuf import struct_pb2, timestamp_pb2

from core.settings import Settings, get_settings
from gateway import schemas, views
from gateway.credentials import Metadata, credentials
from gateway.errors import from_rpc_error
from gateway.responses import JsonResponse


class Stubs:
    """gRPC stubs over the one shared channel to core."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        self.bookings = bookings_pb2_grpc.BookingServiceStub(channel)
        self.calls = calls_pb2_grpc.CallServiceStub(channel)
        self.skills = skills_pb2_grpc.SkillServiceStub(channel)


Creds = Annotated[Metadata, Depends(credentials)]


def stubs(request: Request) -> Stubs:
    value: Stubs = request.app.state.stubs
    return value


Core = Annotated[Stubs, Depends(stubs)]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = grpc.aio.insecure_channel(
            settings.grpc_target,
            options=(
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ),
        )
        app.state.stubs = Stubs(channel)
        try:
            yield
        finally:
            await channel.close()

    app = FastAPI(title="AI Call Agent", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(grpc.aio.AioRpcError)
    async def _rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> Response:
        return from_rpc_error(exc)

    _users_routes(app)
    _booking_routes(app)
    _call_routes(app, settings)
    _skill_routes(app)

    @app.get("/healthz", tags=["ops"], summary="Gateway liveness (not part of the contract)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _users_routes(app: FastAPI) -> None:
    @app.get(
        "/users/me",
        tags=["users"],
        summary="Current user profile + quota",
        response_model=schemas.MeDTO,
    )
    async def me(creds: Creds, core: Core) -> Response:
        reply = await core.accounts.GetMe(accounts_pb2.GetMeRequest(), metadata=creds)
        return JsonResponse(views.me(reply.me))

    @app.put(
        "/users/me/webhook",
        tags=["users"],
        summary="Set the ask_user webhook URL (optionally rotate the HMAC secret)",
        response_model=schemas.SetWebhookResponse,
    )
    async def set_webhook(body: schemas.SetWebhookRequest, creds: Creds, core: Core) -> Response:
        reply = await core.accounts.SetWebhook(
            accounts_pb2.SetWebhookRequest(url=body.url, regenerate_secret=body.regenerate_secret),
            metadata=creds,
        )
        secret = reply.secret if reply.HasField("secret") else None
        return JsonResponse({"url": reply.url, "secret": secret})

    @app.delete(
        "/users/me/webhook",
        tags=["users"],
        summary="Remove the ask_user webhook URL and secret",
        response_model=schemas.ClearWebhookResponse,
    )
    async def clear_webhook(creds: Creds, core: Core) -> Response:
        reply = await core.accounts.ClearWebhook(accounts_pb2.ClearWebhookRequest(), metadata=creds)
        return JsonResponse({"cleared": reply.cleared})

    @app.put(
        "/users/me/limits",
        tags=["users"],
        summary="Set the max number of concurrent calls allowed for this customer",
        response_model=schemas.LimitsResponse,
    )
    async def set_limits(body: schemas.SetLimitsRequest, creds: Creds, core: Core) -> Response:
        reply = await core.accounts.SetLimits(
            accounts_pb2.SetLimitsRequest(max_concurrent_calls=body.max_concurrent_calls),
            metadata=creds,
        )
        return JsonResponse({"max_concurrent_calls": reply.max_concurrent_calls})


def _booking_routes(app: FastAPI) -> None:
    @app.get(
        "/v1/booking/bookings",
        tags=["bookings"],
        summary="List the customer's bookings (most recent first)",
        response_model=list[schemas.BookingDTO],
    )
    async def list_bookings(
        creds: Creds,
        core: Core,
        status: Annotated[
            str | None,
            Query(
                description="Filter by booking status. One of: active, pending_user_confirm, "
                "past, cancelled. Omit to return bookings regardless of status."
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Response:
        reply = await core.bookings.ListBookings(
            bookings_pb2.ListBookingsRequest(status=status or "", limit=limit), metadata=creds
        )
        return JsonResponse([views.booking(b) for b in reply.bookings])

    @app.get(
        "/v1/booking/bookings/{booking_id}",
        tags=["bookings"],
        summary="Get a single booking by id",
        response_model=schemas.BookingDTO,
    )
    async def get_booking(booking_id: str, creds: Creds, core: Core) -> Response:
        reply = await core.bookings.GetBooking(
            bookings_pb2.GetBookingRequest(booking_id=booking_id), metadata=creds
        )
        return JsonResponse(views.booking(reply.booking))


def _timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def _call_routes(app: FastAPI, settings: Settings) -> None:
    @app.post(
        "/calls",
        tags=["calls"],
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
                request_id=idempotency_key or "",
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

    @app.get(
        "/calls",
        tags=["calls"],
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
            calls_pb2.ListCallsRequest(limit=limit, since=_timestamp(since)), metadata=creds
        )
        return JsonResponse([views.call(c) for c in reply.calls])

    @app.get(
        "/calls/{call_id}",
        tags=["calls"],
        summary="Get a single call by id",
        response_model=schemas.CallDTO,
    )
    async def get_call(call_id: str, creds: Creds, core: Core) -> Response:
        reply = await core.calls.GetCall(calls_pb2.GetCallRequest(call_id=call_id), metadata=creds)
        return JsonResponse(views.call(reply.call))

    @app.post(
        "/calls/{call_id}/answer",
        tags=["calls"],
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

    @app.post(
        "/calls/{call_id}/cancel",
        tags=["calls"],
        summary="Cancel a call that hasn't completed",
        response_model=schemas.CancelResponse,
    )
    async def cancel_call(call_id: str, creds: Creds, core: Core) -> Response:
        reply = await core.calls.CancelCall(
            calls_pb2.CancelCallRequest(call_id=call_id), metadata=creds
        )
        return JsonResponse({"cancelled": reply.cancelled})

    from gateway import streams

    streams.add_routes(app, settings)


_OBJECT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "object", "additionalProperties": True, "title": "Body"}
        }
    },
}


def _skill_routes(app: FastAPI) -> None:
    @app.get(
        "/skills",
        tags=["skills"],
        summary="List registered AI-agent skills",
        response_model=list[schemas.SkillSummary],
    )
    async def list_skills(core: Core) -> Response:
        reply = await core.skills.ListSkills(skills_pb2.ListSkillsRequest())
        return JsonResponse(
            [
                {
                    "skill_id": s.skill_id,
                    "title": s.title,
                    "description": s.description,
                    "manifest_url": s.manifest_url,
                    "run_url": s.run_url,
                }
                for s in reply.skills
            ]
        )

    @app.get(
        "/skills/{skill_id}/manifest",
        tags=["skills"],
        summary="Get the input schema + capability manifest for a skill",
        response_model=dict[str, Any],
    )
    async def get_manifest(skill_id: str, request: Request, core: Core) -> Response:
        reply = await core.skills.GetSkillManifest(
            skills_pb2.GetSkillManifestRequest(skill_id=skill_id)
        )
        headers = {"ETag": reply.etag, "Cache-Control": "public, max-age=300"}
        if request.headers.get("if-none-match") == reply.etag:
            return Response(status_code=304, headers=headers)
        return Response(reply.manifest_json, media_type="application/json", headers=headers)

    @app.post(
        "/skills/{skill_id}/run",
        tags=["skills"],
        summary="Run a skill — translates structured input into a voice call",
        status_code=201,
        response_model=schemas.SkillRunResponse,
        responses={
            202: {
                "model": schemas.SkillRunResponse,
                "description": "Call queued (call_queue_enabled). The drainer "
                "dials it later; poll status_url.",
            }
        },
        openapi_extra={"requestBody": _OBJECT_BODY},
    )
    async def run_skill(
        skill_id: str,
        request: Request,
        creds: Creds,
        core: Core,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> Response:
        # The raw JSON goes to core as is (core validates it against the skill's schema);
        # only "is it a JSON object" is checked here, with FastAPI's 422 shape.
        raw = await request.body()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            return JsonResponse(
                {
                    "detail": [
                        {
                            "type": "dict_type",
                            "loc": ["body"],
                            "msg": "Input should be a valid JSON object",
                            "input": None,
                        }
                    ]
                },
                status_code=422,
            )
        reply = await core.skills.RunSkill(
            skills_pb2.RunSkillRequest(
                skill_id=skill_id, input_json=raw, request_id=idempotency_key or ""
            ),
            metadata=creds,
        )
        return JsonResponse(views.skill_run(reply), status_code=202 if reply.queued else 201)
