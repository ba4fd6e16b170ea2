"""Text with a NUL character is refused before any query sees it (PostgreSQL cannot store it)."""

from __future__ import annotations

import pytest
from callagent.v1 import calls_pb2
from google.protobuf import struct_pb2

from core.domain import texts
from core.domain.errors import CallagentError
from core.rpc import storable


def test_nul_path_finds_values_and_keys_at_any_depth() -> None:
    assert texts.nul_path({"a": [1, {"b": "x\x00"}]}) == "a[1].b"
    assert texts.nul_path({"a": {"k\x00": 1}}) == "a"
    assert texts.nul_path("\x00") == "value"
    assert texts.nul_path({"a": ["fine", 2, None, {"b": "ok"}]}) is None


def test_nul_path_walks_deep_values_without_recursion() -> None:
    value: object = "x\x00"
    for _ in range(5000):
        value = [value]
    assert texts.nul_path(value) is not None


def test_a_nul_in_an_id_is_not_found_like_any_unknown_id() -> None:
    with pytest.raises(CallagentError) as refused:
        storable.check(calls_pb2.GetCallRequest(call_id="call_\x00"))
    assert (refused.value.reason, refused.value.message) == ("NOT_FOUND", "call not found")


@pytest.mark.parametrize(
    "request_message",
    [
        calls_pb2.StartCallRequest(target_phone="+15550100", brief="hi\x00"),
        calls_pb2.StartCallRequest(
            brief="hi",
            parsed_slots=struct_pb2.Struct(fields={"k": struct_pb2.Value(string_value="\x00")}),
        ),
        calls_pb2.StartCallRequest(
            brief="hi",
            parsed_slots=struct_pb2.Struct(fields={"k\x00": struct_pb2.Value(number_value=1)}),
        ),
        calls_pb2.SubmitAnswerRequest(call_id="call_1", answer="yes\x00"),
    ],
)
def test_a_nul_anywhere_else_is_an_invalid_field(request_message: object) -> None:
    with pytest.raises(CallagentError) as refused:
        storable.check(request_message)
    assert refused.value.reason == "INVALID_ARGUMENT_FIELD"
    assert "NUL" in refused.value.message


def test_clean_requests_pass() -> None:
    storable.check(calls_pb2.StartCallRequest(target_phone="+15550100", brief="Table for 2"))
    storable.check(calls_pb2.GetCallRequest(call_id="call_1"))
