"""The reason table stays pure and maps onto gRPC, and skill manifests agree with it."""

from __future__ import annotations

import grpc

from core.domain import errors, skills


def test_every_reason_code_is_a_grpc_status_code() -> None:
    for reason in errors.REASONS.values():
        assert grpc.StatusCode[reason.code.name].name == reason.code.value


def test_skill_run_errors_take_their_http_status_from_the_table() -> None:
    for status, reason, _meaning in skills.RUN_ERRORS:
        assert status == errors.REASONS[reason].http_status
