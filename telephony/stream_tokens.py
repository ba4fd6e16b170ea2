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

The DTMF re-connect's token also names the stream's owner (`b` = 2): the internal websocket URL
of the media pod whose bridge waits for the new stream, sent beside it in the `stream_owner`
`<Parameter>`. Twilio may land that stream on another media pod, which relays it to the owner
(`media.twilio.stream_relay`); the MAC covering the owner is what keeps a media pod from being
told to connect to an address of someone else's choosing. First-stream tokens are unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

PARAMETER = "stream_token"
OWNER_PARAMETER = "stream_owner"
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


def _mac(key: bytes, call_id: str, expires_at: int, call_sid: str, owner: str | None) -> str:
    fields: list[str | int] = [_VERSION, call_id, expires_at, call_sid]
    if owner is not None:  # absent, not empty, for the tokens minted before owners existed
        fields.append(owner)
    message = json.dumps(fields).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint(
    key: bytes,
    call_id: str,
    *,
    expires_at: int,
    call_sid: str | None = None,
    owner: str | None = None,
) -> str:
    """A token for `call_id` until `expires_at` (unix seconds), bound to `call_sid` if given,
    and to the stream's `owner` (a re-connect's, so only with a SID) if given."""
    if not call_id:
        raise ValueError("a stream token needs a call id")
    if owner is not None and not (owner and call_sid):
        raise ValueError("only a re-connect (with a call SID) names a non-empty owner")
    bound = "2" if owner else "1" if call_sid else "0"
    mac = _mac(key, call_id, expires_at, call_sid or "", owner)
    return f"{_VERSION}.{expires_at}.{bound}.{mac}"


def check(
    key: bytes,
    token: str | None,
    call_id: str,
    call_sid: str,
    *,
    now: float,
    owner: str | None = None,
) -> str | None:
    """Accept `token` for a stream of `call_id` with `call_sid` at time `now`, or refuse.

    `owner` is the stream's `stream_owner` parameter as received. Returns the owner the token
    binds (a re-connect's), None for a token that binds none (whatever `owner` was given).

    Raises:
        StreamTokenRefused: missing, malformed, expired, or made for another call (or SID, or
            owner).
    """
    if not token:
        raise StreamTokenRefused("missing")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or parts[2] not in ("0", "1", "2"):
        raise StreamTokenRefused("malformed")
    expiry, bound, mac = parts[1], parts[2], parts[3]
    if not expiry.isascii() or not expiry.isdigit() or len(expiry) > 12:
        raise StreamTokenRefused("malformed")
    expires_at = int(expiry)
    sid = call_sid if bound in ("1", "2") else ""
    bound_owner = (owner or "") if bound == "2" else None
    expected = _mac(key, call_id, expires_at, sid, bound_owner)
    # The MAC first: a forged token is a mismatch whatever expiry it claims.
    if not hmac.compare_digest(expected.encode("ascii"), mac.encode("utf-8", "replace")):
        raise StreamTokenRefused("mismatch")
    if now >= expires_at:
        raise StreamTokenRefused("expired")
    return bound_owner or None
