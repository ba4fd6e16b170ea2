"""Core as a gRPC server: health, reflection, ErrorInfo details, admin rules."""

from __future__ import annotations

import grpc
import pytest
from callagent.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
)
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from core.app import api_keys
from core.main import SERVICE_NAMES
from tests.conftest import BOOTSTRAP_KEY

ADMIN = (("x-api-key", BOOTSTRAP_KEY),)


def _error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            assert status.details[0].Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", *SERVICE_NAMES):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    async for response in call:
        names = {s.name for s in response.list_services_response.service}
        assert set(SERVICE_NAMES) <= names
        break


async def test_errors_carry_error_info(channel: grpc.aio.Channel) -> None:
    stub = accounts_pb2_grpc.AccountServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetMe(accounts_pb2.GetMeRequest(), metadata=(("x-api-key", "ck_bad"),))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info = _error_info(err.value)
    assert info.reason == "UNAUTHENTICATED_KEY"
    assert info.domain == "callagent.dev"
    assert info.metadata["http_status"] == "401"


async def test_admin_rpcs_need_admin(
    channel: grpc.aio.Channel, customer: api_keys.CreatedKey
) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetMaintenance(
            admin_pb2.GetMaintenanceRequest(), metadata=(("x-api-key", customer.api_key),)
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_admin_creates_keys_and_sets_maintenance(channel: grpc.aio.Channel) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    created = await admin.CreateApiKey(
        admin_pb2.CreateApiKeyRequest(customer_name="acme", quota_limit=42), metadata=ADMIN
    )
    accounts = accounts_pb2_grpc.AccountServiceStub(channel)
    me = (
        await accounts.GetMe(
            accounts_pb2.GetMeRequest(), metadata=(("x-api-key", created.api_key),)
        )
    ).me
    assert me.customer_name == "acme" and me.quota_limit == 42 and not me.HasField("maintenance")
    resume = timestamp_pb2.Timestamp(seconds=1_900_000_000)
    await admin.SetMaintenance(
        admin_pb2.SetMaintenanceRequest(message="upgrade", resume_at=resume), metadata=ADMIN
    )
    me = (
        await accounts.GetMe(
            accounts_pb2.GetMeRequest(), metadata=(("x-api-key", created.api_key),)
        )
    ).me
    assert me.maintenance["message"] == "upgrade"
    cleared = await admin.ClearMaintenance(admin_pb2.ClearMaintenanceRequest(), metadata=ADMIN)
    assert cleared.maintenance.active is False
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.SetMaintenance(admin_pb2.SetMaintenanceRequest(message="  "), metadata=ADMIN)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
