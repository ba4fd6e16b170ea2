"""Per-call Media Streams tokens: which call a `/twilio/stream` socket may speak for.

The stream URL in our TwiML is the same for every call, so Twilio's `X-Twilio-Signature` on the
websocket upgrade is the same for every call too: it proves the URL was signed with our auth
token once, never which call the socket belongs to, and one captured upgrade header would let
anyone open a stream and name a live call id. So whoever builds the TwiML (core, through
`telephony.twilio_rest`) also puts a token in a `<Parameter>`, Twilio hands it back in
`start.customParameters`, and media checks it before the socket may carry any audio.

A token is `v1.<expiry unix seconds>.<b>.<mac>`: an HMAC-SHA256 over the call id, the expiry
and the call SID (when the TwiML is built for a call that already has one: the DTMF re-connect;
`b` says whether it was bound, and the MAC covers that choice). The key is derived from a secret
both processes already hold (the Twilio auth token), domain-separated, so a stream token is
never valid as anything else. Pure: no I/O, the clock is the caller's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

PARAMETER = "stream_token"
_VERSION = "v1"
_DOMAIN = b"callagent-media-stream-v1"


class StreamTokenRefused(Exception):
    """The token does not let this stream speak for the call; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def stream_key(secret: str) -> bytes:
    """The stream-token key derived from a shared secret (never the secret itself)."""
    if not secret:
        raise ValueError("the stream-token secret must not be empty")
    return hmac.new(secret.encode(), _DOMAIN, hashlib.sha256).digest()


def _mac(key: bytes, call_id: str, expires_at: int, call_sid: str) -> str:
    message = json.dumps([_VERSION, call_id, expires_at, call_sid]).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint(key: bytes, call_id: str, *, expires_at: int, call_sid: str | None = None) -> str:
    """A token for `call_id` until `expires_at` (unix seconds), bound to `call_sid` if given."""
    if not call_id:
        raise ValueError("a stream token needs a call id")
    bound = "1" if call_sid else "0"
    mac = _mac(key, call_id, expires_at, call_sid or "")
    return f"{_VERSION}.{expires_at}.{bound}.{mac}"


def check(key: bytes, token: str | None, call_id: str, call_sid: str, *, now: float) -> None:
    """Accept `token` for a stream of `call_id` with `call_sid` at time `now`, or refuse.

    Raises:
        StreamTokenRefused: missing, malformed, expired, or made for another call (or SID).
    """
    if not token:
        raise StreamTokenRefused("missing")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or parts[2] not in ("0", "1"):
        raise StreamTokenRefused("malformed")
    expiry, bound, mac = parts[1], parts[2], parts[3]
    if not expiry.isascii() or not expiry.isdigit() or len(expiry) > 12:
        raise StreamTokenRefused("malformed")
    expires_at = int(expiry)
    sid = call_sid if bound == "1" else ""
    expected = _mac(key, call_id, expires_at, sid)
    # The MAC first: a forged token is a mismatch whatever expiry it claims.
    if not hmac.compare_digest(expected.encode("ascii"), mac.encode("utf-8", "replace")):
        raise StreamTokenRefused("mismatch")
    if now >= expires_at:
        raise StreamTokenRefused("expired")
