"""X-Gateway-Context: what a valid context yields and every way one is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from core.domain import gateway_context
from core.domain.errors import CallagentError

SECRET = "s3cret"
MISSING = "missing customer_id or api_key_id"
NOW = 1_700_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refusal(header: str, secret: str = SECRET) -> str:
    with pytest.raises(CallagentError) as caught:
        gateway_context.verify(secret, header, NOW)
    assert caught.value.reason == "UNAUTHENTICATED_CONTEXT"
    prefix = "X-Gateway-Context rejected: "
    assert caught.value.message.startswith(prefix)
    return caught.value.message.removeprefix(prefix)


def _signed_payload(claims: object) -> str:
    """A correctly signed header around arbitrary claims."""
    payload = _b64(orjson.dumps(claims))
    signature = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


def test_a_signed_unexpired_context_names_the_caller() -> None:
    header = gateway_context.sign(SECRET, "cus_1", "key_1", NOW + 60)
    assert gateway_context.verify(SECRET, header, NOW) == ("cus_1", "key_1")


@pytest.mark.parametrize("header", ["", "no-dot", ".sig", "payload."])
def test_a_malformed_header(header: str) -> None:
    assert _refusal(header) == "not <payload>.<signature>"


def test_not_base64_json() -> None:
    assert _refusal("!!!.???") == "not base64url JSON"


def test_a_wrong_secret_or_a_tampered_payload() -> None:
    header = gateway_context.sign(SECRET, "cus_1", "key_1", NOW + 60)
    assert _refusal(header, secret="other") == "bad signature"
    payload, _, signature = header.partition(".")
    other = gateway_context.sign(SECRET, "cus_2", "key_1", NOW + 60).partition(".")[0]
    assert _refusal(f"{other}.{signature}") == "bad signature"
    assert payload != other


def test_expired_at_or_before_now() -> None:
    assert _refusal(gateway_context.sign(SECRET, "c", "k", NOW)) == "expired"
    assert _refusal(gateway_context.sign(SECRET, "c", "k", NOW - 1)) == "expired"


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ([1, 2], "payload is not an object"),
        ({"api_key_id": "k", "exp": NOW + 60}, MISSING),
        ({"customer_id": "c", "api_key_id": 7, "exp": NOW + 60}, MISSING),
        ({"customer_id": "c", "api_key_id": "k"}, "expired"),
        ({"customer_id": "c", "api_key_id": "k", "exp": True}, "expired"),
        ({"customer_id": "c", "api_key_id": "k", "exp": "later"}, "expired"),
    ],
)
def test_signed_but_unusable_claims(claims: object, why: str) -> None:
    assert _refusal(_signed_payload(claims)) == why
