"""`/users/me*`: the caller's own account, mapped onto core's AccountService.

The caller is always the customer the credentials resolve to, so no route takes an
account id; each forwards the headers as gRPC metadata and renders the reply.
"""

from __future__ import annotations

from callagent.v1 import accounts_pb2
from fastapi import APIRouter
from fastapi.responses import Response

from gateway import schemas, views
from gateway.credentials import Creds
from gateway.responses import JsonResponse
from gateway.stubs import Core

router = APIRouter(tags=["users"])


@router.get("/users/me", summary="Current user profile + quota", response_model=schemas.MeDTO)
async def me(creds: Creds, core: Core) -> Response:
    reply = await core.accounts.GetMe(accounts_pb2.GetMeRequest(), metadata=creds)
    return JsonResponse(views.me(reply.me))


@router.put(
    "/users/me/webhook",
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


@router.delete(
    "/users/me/webhook",
    summary="Remove the ask_user webhook URL and secret",
    response_model=schemas.ClearWebhookResponse,
)
async def clear_webhook(creds: Creds, core: Core) -> Response:
    reply = await core.accounts.ClearWebhook(accounts_pb2.ClearWebhookRequest(), metadata=creds)
    return JsonResponse({"cleared": reply.cleared})


@router.put(
    "/users/me/limits",
    summary="Set the max number of concurrent calls allowed for this customer",
    response_model=schemas.LimitsResponse,
)
async def set_limits(body: schemas.SetLimitsRequest, creds: Creds, core: Core) -> Response:
    reply = await core.accounts.SetLimits(
        accounts_pb2.SetLimitsRequest(max_concurrent_calls=body.max_concurrent_calls),
        metadata=creds,
    )
    return JsonResponse({"max_concurrent_calls": reply.max_concurrent_calls})
