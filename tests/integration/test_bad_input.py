"""Hostile or malformed input gets a 4xx in the contract's error shape, never a 500.

Each case here once reached a 500 (issue #11): integers and dates that overflow the
protobuf types, header bytes gRPC metadata cannot carry, strings UTF-8 cannot encode,
bodies too deep or too large, unmapped gRPC codes. Headers gRPC or httpx would refuse
to send are written on a raw socket, so the gateway sees exactly those bytes.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.app import api_keys
from core.main import Core
from tests.fakes.telephony import FakeTelephony

BODY = {"target_phone": "+15550100", "brief": "Table for 2 tomorrow at 19:00 under Anna"}


def key(customer: api_keys.CreatedKey) -> dict[str, str]:
    return {"X-API-Key": customer.api_key}


async def raw_request(base_url: str, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send one HTTP/1.1 request byte for byte; return its status and JSON body."""
    url = urllib.parse.urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        async with asyncio.timeout(10):
            writer.write(head + b"Host: x\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            raw = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    status = int(status_line.split()[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, {"raw": payload.decode("latin-1")}


def code_of(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, dict), response.text
    assert detail["message"], response.text
    return str(detail["code"])


async def no_calls(core: Core, telephony: FakeTelephony) -> None:
    assert telephony.dials == []
    assert await core.pool.fetchval("SELECT count(*) FROM calls") == 0


@pytest.mark.parametrize("limit", ["2147483648", "-2147483649", "99999999999999999999", "-1", "0"])
async def test_out_of_range_call_limits_are_400(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, limit: str
) -> None:
    response = await http.get("/calls", params={"limit": limit}, headers=key(customer))
    assert response.status_code == 400, response.text
    assert code_of(response) == "INVALID_ARGUMENT_LIMIT"


@pytest.mark.parametrize("limit", ["2147483648", "0", "-5", "101"])
async def test_out_of_range_booking_limits_are_422(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, limit: str
) -> None:
    response = await http.get(
        "/v1/booking/bookings", params={"limit": limit}, headers=key(customer)
    )
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "since", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:60Z"]
)
async def test_since_outside_timestamp_range_is_4xx(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey, since: str
) -> None:
    response = await http.get("/calls", params={"since": since}, headers=key(customer))
    assert response.status_code in (400, 422), response.text
    if response.status_code == 400:
        assert code_of(response) == "INVALID_ARGUMENT_FIELD"


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (b"ck_abc\tdef", 401),
        (b"ck_\xc3\xa9t\xc3\xa9", 401),
        (b"ck_\xff", 401),
        (b"ck_" + b"a" * 65536, 401),
        # The HTTP server itself refuses a control byte in a header, before the app.
        (b"ck_abc\x01def", 400),
    ],
    ids=["tab", "utf8", "latin1", "64KB", "control"],
)
@pytest.mark.parametrize("header", [b"X-API-Key", b"X-Gateway-Context"])
async def test_credentials_that_cannot_be_valid_are_401(
    gateway_url: str, customer: api_keys.CreatedKey, header: bytes, value: bytes, status: int
) -> None:
    got, body = await raw_request(
        gateway_url, b"GET /users/me HTTP/1.1\r\n%s: %s\r\n" % (header, value)
    )
    assert got == status, body
    if status == 401:
        expected = "UNAUTHENTICATED_KEY" if header == b"X-API-Key" else "UNAUTHENTICATED_CONTEXT"
        assert body["detail"]["code"] == expected


async def test_bad_key_bodies_look_the_same(
    gateway_url: str, customer: api_keys.CreatedKey
) -> None:
    _, unknown = await raw_request(gateway_url, b"GET /users/me HTTP/1.1\r\nX-API-Key: ck_nope\r\n")
    _, control = await raw_request(gateway_url, b"GET /users/me HTTP/1.1\r\nX-API-Key: ck_\xff\r\n")
    assert unknown == control


@pytest.mark.parametrize(
    "value",
    [b"9223372036854775808", "²".encode(), b"0" * 5000, b"-1", b"1.5", "１".encode()],
    ids=["int64-overflow", "superscript", "5000-zeros", "negative", "float", "fullwidth"],
)
async def test_bad_last_event_id_is_400(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey, value: bytes
) -> None:
    started = await http.post("/calls", json=BODY, headers=key(customer))
    call_id = started.json()["call"]["call_id"]
    response = await http.get(
        f"/calls/{call_id}/events",
        headers={"X-API-Key": customer.api_key.encode(), "Last-Event-ID": value},
    )
    assert response.status_code == 400, response.text
    assert code_of(response) == "INVALID_ARGUMENT_FIELD"


@pytest.mark.parametrize(
    "patch",
    [
        {"brief": "book a table \ud800 for two"},
        {"target_phone": "+1555\udfff0100"},
        {"language": "\ud800"},
        {"parsed_slots": {"note": "x\udc00y"}},
        {"parsed_slots": {"k\ud800": 1}},
    ],
)
async def test_lone_surrogates_are_422(
    http: httpx.AsyncClient,
    core: Core,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
    patch: dict[str, Any],
) -> None:
    raw = json.dumps({**BODY, **patch}).encode()  # ensure_ascii: the surrogate as \ud800
    response = await http.post(
        "/calls", content=raw, headers={**key(customer), "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    await no_calls(core, telephony)


async def test_lone_surrogate_in_answer_is_422(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    response = await http.post(
        "/calls/nope/answer",
        content=b'{"answer": "yes \\ud800"}',
        headers={**key(customer), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_parsed_slots_too_deep_is_422(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    response = await http.post(
        "/calls", json={**BODY, "parsed_slots": nested(150)}, headers=key(customer)
    )
    assert response.status_code == 422, response.text
    assert len(response.content) < 2000  # the error does not echo the 150 levels back
    await no_calls(core, telephony)


async def test_parsed_slots_over_64kb_is_422(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    slots = {f"k{i}": "x" * 1000 for i in range(70)}
    response = await http.post(
        "/calls", json={**BODY, "parsed_slots": slots}, headers=key(customer)
    )
    assert response.status_code == 422, response.text
    assert len(response.content) < 2000
    await no_calls(core, telephony)


async def test_modest_parsed_slots_still_start_a_call(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    slots = {"date": "2030-01-01", "guests": 2, "extras": nested(15)}
    response = await http.post(
        "/calls", json={**BODY, "parsed_slots": slots}, headers=key(customer)
    )
    assert response.status_code == 201, response.text


async def test_5mb_parsed_slots_is_413(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    response = await http.post(
        "/calls", json={**BODY, "parsed_slots": {"blob": "x" * 5_000_000}}, headers=key(customer)
    )
    assert response.status_code == 413, response.text
    assert code_of(response) == "REQUEST_TOO_LARGE"
    await no_calls(core, telephony)


async def test_large_content_length_is_413_before_the_body_is_read(
    gateway_url: str, customer: api_keys.CreatedKey
) -> None:
    head = (
        b"POST /calls HTTP/1.1\r\nX-API-Key: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: 52428800\r\n" % customer.api_key.encode()
    )
    status, body = await raw_request(gateway_url, head, b"{")
    assert status == 413
    assert body["detail"]["code"] == "REQUEST_TOO_LARGE"


async def test_large_chunked_body_is_413(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"target_phone": "+15550100", "brief": "'
        for _ in range(40):
            yield b"x" * 65536

    response = await http.post(
        "/calls", content=chunks(), headers={**key(customer), "Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert code_of(response) == "REQUEST_TOO_LARGE"


async def test_validation_errors_do_not_echo_large_input(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    response = await http.post(
        "/calls", json={**BODY, "brief": "x" * 900_000}, headers=key(customer)
    )
    assert response.status_code == 422
    assert len(response.content) < 2000
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "brief"]
    assert len(error["input"]) <= 120


@pytest.mark.parametrize("value", [b"   ", b"", b"\t"], ids=["spaces", "empty", "tab"])
async def test_blank_idempotency_key_is_400(
    gateway_url: str,
    core: Core,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
    value: bytes,
) -> None:
    body = json.dumps(BODY).encode()
    head = (
        b"POST /calls HTTP/1.1\r\nX-API-Key: %s\r\nIdempotency-Key:%s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n"
        % (customer.api_key.encode(), value, len(body))
    )
    for _ in range(3):
        status, answer = await raw_request(gateway_url, head, body)
        assert status == 400, answer
        assert answer["detail"]["code"] == "idempotency_key_blank"
    await no_calls(core, telephony)


async def test_blank_idempotency_key_on_skill_run_is_400(
    gateway_url: str, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    skill_id = (await http.get("/skills")).json()[0]["skill_id"]
    head = (
        b"POST /skills/%s/run HTTP/1.1\r\nX-API-Key: %s\r\nIdempotency-Key:  \r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n"
        % (skill_id.encode(), customer.api_key.encode())
    )
    status, answer = await raw_request(gateway_url, head, b"{}")
    assert status == 400, answer
    assert answer["detail"]["code"] == "idempotency_key_blank"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/users/me/webhook", {"PUT", "DELETE"}),
        ("/calls", {"GET", "POST"}),
        ("/calls/abc", {"GET"}),
        ("/skills/x/run", {"POST"}),
    ],
)
async def test_options_and_405_name_every_allowed_method(
    http: httpx.AsyncClient, path: str, allowed: set[str]
) -> None:
    options = await http.options(path)
    assert options.status_code == 204
    assert set(options.headers["allow"].split(", ")) == allowed | {"OPTIONS"}
    wrong = await http.patch(path)
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == allowed | {"OPTIONS"}
    assert code_of(wrong) == "METHOD_NOT_ALLOWED"


async def test_unknown_path_is_404_in_the_error_shape(http: httpx.AsyncClient) -> None:
    response = await http.get("/no/such/path")
    assert response.status_code == 404
    assert code_of(response) == "NOT_FOUND"


async def test_unparsable_json_is_422(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    response = await http.post(
        "/calls",
        content=b'{"brief": ',
        headers={**key(customer), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "patch",
    [
        {"brief": "Table for 2\u0000"},
        {"parsed_slots": {"note": "a\u0000b"}},
        {"parsed_slots": {"k\u0000": 1}},
    ],
)
async def test_a_nul_character_in_a_call_is_400(
    http: httpx.AsyncClient,
    core: Core,
    customer: api_keys.CreatedKey,
    telephony: FakeTelephony,
    patch: dict[str, Any],
) -> None:
    response = await http.post("/calls", json={**BODY, **patch}, headers=key(customer))
    assert response.status_code == 400, response.text
    assert code_of(response) == "INVALID_ARGUMENT_FIELD"
    await no_calls(core, telephony)


async def test_a_nul_character_in_an_answer_is_400(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    started = await http.post("/calls", json=BODY, headers=key(customer))
    call_id = started.json()["call"]["call_id"]
    response = await http.post(
        f"/calls/{call_id}/answer", json={"answer": "yes\u0000"}, headers=key(customer)
    )
    assert response.status_code == 400, response.text
    assert code_of(response) == "INVALID_ARGUMENT_FIELD"


async def test_a_nul_character_in_an_id_is_the_unknown_id_404(
    http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    unknown = await http.get("/calls/call_nope", headers=key(customer))
    with_nul = await http.get("/calls/call_%00nope", headers=key(customer))
    assert unknown.status_code == with_nul.status_code == 404
    assert with_nul.json() == unknown.json()
    booking = await http.get("/v1/booking/bookings/b%00", headers=key(customer))
    assert booking.status_code == 404, booking.text


async def test_a_nul_character_in_a_skill_run_is_400(
    http: httpx.AsyncClient, core: Core, customer: api_keys.CreatedKey, telephony: FakeTelephony
) -> None:
    response = await http.post(
        "/skills/concierge/run",
        json={"phone": "+15550100", "brief": "Ask whether they are open\u0000"},
        headers=key(customer),
    )
    assert response.status_code == 400, response.text
    await no_calls(core, telephony)
