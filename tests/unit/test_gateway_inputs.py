"""The gateway's wire-format checks and error mapping, without sockets (issue #11)."""

from __future__ import annotations

import datetime as dt

import grpc
import httpx
import orjson
import pytest
from fastapi.exceptions import RequestValidationError

from gateway import errors, inputs
from gateway.app import create_app
from gateway.settings import GatewaySettings


@pytest.mark.parametrize("value", ["ck_abc", "a.b-c_d~", "x" * inputs.MAX_CREDENTIAL_LENGTH, "!~"])
def test_credentials_that_can_travel(value: str) -> None:
    assert inputs.credential_ok(value)


@pytest.mark.parametrize(
    "value",
    ["", "ck abc", "ck\tabc", "ck\x01", "ck\x7f", "cké", "ck\xff", "x" * 4097, "ck\ud800"],
)
def test_credentials_that_cannot_be_valid(value: str) -> None:
    assert not inputs.credential_ok(value)


@pytest.mark.parametrize(("text", "expected"), [("0", 0), ("42", 42), (str(2**63 - 1), 2**63 - 1)])
def test_event_ids(text: str, expected: int) -> None:
    assert inputs.event_id(text) == expected


@pytest.mark.parametrize(
    "text", [str(2**63), "²", "１", "0" * 5000, "-1", "+1", "1.0", " 1", "1e3", "0" * 20]
)
def test_bad_event_ids(text: str) -> None:
    with pytest.raises(inputs.Rejected) as caught:
        inputs.event_id(text)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_ARGUMENT_FIELD")


def test_int32_bounds() -> None:
    assert inputs.int32("limit", 2**31 - 1) == 2**31 - 1
    assert inputs.int32("limit", -(2**31)) == -(2**31)
    for bad in (2**31, -(2**31) - 1, 10**30):
        with pytest.raises(inputs.Rejected) as caught:
            inputs.int32("limit", bad, "INVALID_ARGUMENT_LIMIT")
        assert caught.value.code == "INVALID_ARGUMENT_LIMIT"
        assert "limit" in caught.value.message


def test_timestamps_in_range_convert_naive_as_utc() -> None:
    stamp = inputs.timestamp("since", dt.datetime(2030, 1, 1, 12))
    assert stamp is not None
    assert stamp.ToDatetime(tzinfo=dt.UTC) == dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
    assert inputs.timestamp("since", None) is None


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(
            9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(-dt.timedelta(hours=23, minutes=59))
        ),
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59))),
    ],
)
def test_timestamps_out_of_range(value: dt.datetime) -> None:
    with pytest.raises(inputs.Rejected) as caught:
        inputs.timestamp("since", value)
    assert caught.value.code == "INVALID_ARGUMENT_FIELD"
    assert "since" in caught.value.message


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_json_problems() -> None:
    assert inputs.json_problem({"date": "x", "n": [1, 2, {"a": None}]}, 20, 65536) is None
    assert inputs.json_problem(nested(20), 20, 65536) is None
    assert "nested" in (inputs.json_problem(nested(21), 20, 65536) or "")
    assert "nested" in (inputs.json_problem(nested(100_000), 20, 65536) or "")
    assert "KB" in (inputs.json_problem({"a": "x" * 70_000}, 20, 65536) or "")
    assert "KB" in (inputs.json_problem(list(range(10_000)), 20, 65536) or "")
    assert "Unicode" in (inputs.json_problem({"a": ["\ud800"]}, 20, 65536) or "")
    assert "Unicode" in (inputs.json_problem({"\udfff": 1}, 20, 65536) or "")


def test_every_grpc_code_is_mapped_deliberately() -> None:
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        assert code in errors._FALLBACK, code
        status, body_code = errors.fallback(code)
        assert status != 500 and body_code, code
    assert errors.fallback(grpc.StatusCode.RESOURCE_EXHAUSTED) == (413, "REQUEST_TOO_LARGE")
    assert errors.fallback(grpc.StatusCode.UNAVAILABLE)[0] == 503
    assert errors.fallback(grpc.StatusCode.DEADLINE_EXCEEDED)[0] == 504


def test_an_error_without_error_info_has_the_shape_and_a_message() -> None:
    err = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        "Sent message larger than max (5000000 vs. 4194304)",
    )
    response = errors.from_rpc_error(err)
    assert response.status_code == 413
    detail = orjson.loads(response.body)["detail"]
    assert detail["code"] == "REQUEST_TOO_LARGE"
    assert detail["message"]


def test_validation_errors_shorten_inputs_and_stay_encodable() -> None:
    err = RequestValidationError(
        [
            {
                "type": "string_too_long",
                "loc": ("body", "brief"),
                "msg": "too long",
                "input": "x" * 10_000,
                "ctx": {"max_length": 4000},
            },
            {
                "type": "value_error",
                "loc": ("body", "brief"),
                "msg": "bad \ud800",
                "input": "a\ud800b",
            },
            {
                "type": "dict_type",
                "loc": ("body", "parsed_slots", "k\ud800"),
                "msg": "deep",
                "input": {"a": ["x" * 500]},
            },
            {"type": "int_parsing", "loc": ("query", "limit"), "msg": "int", "input": 7},
            {"type": "model_attributes_type", "loc": ("body",), "msg": "obj", "input": 2**65},
        ]
    )
    out = errors.validation_errors(err)
    body = orjson.dumps({"detail": out})  # would raise on a lone surrogate
    assert len(body) < 1000
    assert out[0]["loc"] == ["body", "brief"]
    assert len(out[0]["input"]) <= errors.MAX_ECHO_CHARS + 1
    assert out[0]["ctx"] == {"max_length": 4000}
    assert out[1]["input"] == "a?b"
    assert out[2]["input"] is None
    assert out[3]["input"] == 7
    assert out[4]["input"] == str(2**65)  # orjson cannot write an integer past 64 bits


async def test_an_unexpected_exception_answers_in_the_error_shape() -> None:
    app = create_app(GatewaySettings())

    @app.get("/boom", tags=["test"])
    async def boom() -> None:
        raise RuntimeError("secret=hunter2")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": {"code": "INTERNAL", "message": "internal error"}}
