"""X-Gateway-Context: the signed statement of an upstream gateway about who is calling.

The header is `<payload>.<signature>`: payload = base64url(JSON {"customer_id",
"api_key_id", "exp"}), signature = base64url(HMAC-SHA256(GATEWAY_CONTEXT_SECRET,
payload)). Signing and checking are pure functions of the secret, the header and the
clock reading passed in, so every rejection case is unit-tested; any failure is a
UNAUTHENTICATED_CONTEXT that never falls back to a weaker credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import orjson

from core.domain.errors import CallagentError


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, customer_id: str, api_key_id: str, exp: float) -> str:
    """What an upstream gateway puts in X-Gateway-Context (also used by tests)."""
    payload = _b64(orjson.dumps({"customer_id": customer_id, "api_key_id": api_key_id, "exp": exp}))
    signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


def rejected(why: str) -> CallagentError:
    """The one shape of a refused context."""
    return CallagentError("UNAUTHENTICATED_CONTEXT", f"X-Gateway-Context rejected: {why}")


def verify(secret: str, header: str, now: float) -> tuple[str, str]:
    """Return (customer_id, api_key_id) of a valid context, else raise UNAUTHENTICATED_CONTEXT."""
    payload, dot, signature = header.partition(".")
    if not dot or not payload or not signature:
        raise rejected("not <payload>.<signature>")
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
        claims = orjson.loads(_unb64(payload))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise rejected("not base64url JSON") from None
    if not hmac.compare_digest(expected, given):
        raise rejected("bad signature")
    if not isinstance(claims, dict):
        raise rejected("payload is not an object")
    customer_id, key_id, exp = (
        claims.get("customer_id"),
        claims.get("api_key_id"),
        claims.get("exp"),
    )
    if not isinstance(customer_id, str) or not isinstance(key_id, str):
        raise rejected("missing customer_id or api_key_id")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= now:
        raise rejected("expired")
    return customer_id, key_id
