"""AccountService: the caller's profile, webhook and call cap."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import grpc
from callagent.v1 import accounts_pb2, accounts_pb2_grpc

from core.app import accounts
from core.rpc.convert import struct
from core.rpc.interceptor import current_principal
from core.settings import Settings

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def me_message(me: accounts.Me) -> accounts_pb2.Me:
    return accounts_pb2.Me(
        api_key_id=me.api_key_id,
        customer_id=me.customer_id,
        customer_name=me.customer_name,
        api_key_last_4=me.api_key_last_4,
        status=me.status,
        quota_limit=me.quota_limit,
        current_usage=me.current_usage,
        quota_period=me.quota_period,
        ask_user_webhook_url=me.ask_user_webhook_url,
        ask_user_webhook_configured=me.ask_user_webhook_url is not None,
        max_concurrent_calls=me.max_concurrent_calls,
        is_admin=me.is_admin,
        maintenance=struct(me.maintenance.public()),
    )


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    def __init__(self, pool: asyncpg.Pool[Any], settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    async def GetMe(self, request: accounts_pb2.GetMeRequest, context: Ctx) -> Any:
        me = await accounts.me(self._pool, current_principal())
        return accounts_pb2.GetMeResponse(me=me_message(me))

    async def SetWebhook(self, request: accounts_pb2.SetWebhookRequest, context: Ctx) -> Any:
        url, secret = await accounts.set_webhook(
            self._pool,
            current_principal(),
            request.url,
            regenerate_secret=request.regenerate_secret,
            allowed_hosts=self._settings.webhook_allowed_hosts,
        )
        return accounts_pb2.SetWebhookResponse(url=url, secret=secret)

    async def ClearWebhook(self, request: accounts_pb2.ClearWebhookRequest, context: Ctx) -> Any:
        await accounts.clear_webhook(self._pool, current_principal())
        return accounts_pb2.ClearWebhookResponse(cleared=True)

    async def SetLimits(self, request: accounts_pb2.SetLimitsRequest, context: Ctx) -> Any:
        value = await accounts.set_limits(
            self._pool, current_principal(), request.max_concurrent_calls
        )
        return accounts_pb2.SetLimitsResponse(max_concurrent_calls=value)
