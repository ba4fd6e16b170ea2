"""AdminService: API keys and the maintenance window; admin keys only."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import grpc
from callagent.v1 import admin_pb2, admin_pb2_grpc

from core.app import api_keys, maintenance
from core.domain.errors import CallagentError
from core.rpc.convert import from_ts, ts
from core.rpc.interceptor import current_principal
from core.settings import Settings

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _require_admin() -> None:
    if not current_principal().is_admin:
        raise CallagentError("PERMISSION_DENIED_ADMIN", "this operation needs an admin API key")


def window_message(window: maintenance.Window) -> admin_pb2.Maintenance:
    return admin_pb2.Maintenance(
        active=window.active, message=window.message, resume_at=ts(window.resume_at)
    )


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, pool: asyncpg.Pool[Any], settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    async def CreateApiKey(self, request: admin_pb2.CreateApiKeyRequest, context: Ctx) -> Any:
        _require_admin()
        name = request.customer_name.strip()
        if not name:
            raise CallagentError("INVALID_ARGUMENT_FIELD", "customer_name is required")
        if request.quota_limit < 0:
            raise CallagentError("INVALID_ARGUMENT_FIELD", "quota_limit cannot be negative")
        async with self._pool.acquire() as conn:
            created = await api_keys.create_key(
                conn,
                name,
                is_admin=request.is_admin,
                quota_limit=request.quota_limit or self._settings.default_quota_limit,
            )
        return admin_pb2.CreateApiKeyResponse(
            customer_id=created.customer_id,
            api_key_id=created.api_key_id,
            api_key=created.api_key,
        )

    async def SetMaintenance(self, request: admin_pb2.SetMaintenanceRequest, context: Ctx) -> Any:
        _require_admin()
        window = await maintenance.set_window(
            self._pool, request.message, from_ts(request.resume_at, request.HasField("resume_at"))
        )
        return admin_pb2.SetMaintenanceResponse(maintenance=window_message(window))

    async def ClearMaintenance(
        self, request: admin_pb2.ClearMaintenanceRequest, context: Ctx
    ) -> Any:
        _require_admin()
        window = await maintenance.clear(self._pool)
        return admin_pb2.ClearMaintenanceResponse(maintenance=window_message(window))

    async def GetMaintenance(self, request: admin_pb2.GetMaintenanceRequest, context: Ctx) -> Any:
        _require_admin()
        window = await maintenance.get(self._pool)
        return admin_pb2.GetMaintenanceResponse(maintenance=window_message(window))
