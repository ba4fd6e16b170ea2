"""Hands a DTMF re-connect stream that Twilio landed on the wrong media pod to the owner's.

After `send_dtmf` the call's bridge waits, in the media pod that built the re-connect TwiML,
for Twilio's new stream; behind one public URL (a load balancer, a Kubernetes Service and
Ingress) that stream may reach another pod. That pod must not start a second conversation for
the call, so it opens a websocket (the `websockets` library) to the owner's `/twilio/stream`,
forwards Twilio's `X-Twilio-Signature` and the same query string (the owner checks the
signature over the same public URL, so it verifies), replays the `connected` and `start` it
already read, and then pipes frames both ways until one side closes, closing the other with a
fitting code. The owner applies every check it applies to Twilio (signature, token, SID, one
live stream) and attaches the stream to its waiting bridge.

The owner's URL comes only from a stream token whose MAC covers it (`telephony.stream_tokens`),
so nobody can make a media pod connect to an address of their choosing. A relayed upgrade
carries `RELAYED_HEADER`, and a relayed stream is never relayed again: no loops. If the owner
cannot be reached, Twilio's socket is closed with 1011 and the owner's bridge times out as it
would have without the relay; core then settles the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.types import Receive, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from common import metrics

logger = logging.getLogger(__name__)

RELAYED_HEADER = "X-Callagent-Relayed"
CONNECT_TIMEOUT_S = 3.0
_NORMAL = 1000
_POLICY = 1008
_UNREACHABLE = 1011  # "internal error": the call cannot go on through this pod
# Close codes a peer reports but no endpoint may send (RFC 6455 §7.4.1).
_RESERVED = frozenset({1005, 1006, 1015})


async def relay(
    owner_stream_url: str,
    signature: str | None,
    opening: list[str | bytes],
    receive: Receive,
    send: Send,
    call_id: str,
) -> int:
    """Pipe an accepted Twilio stream to its owner until either side closes.

    `opening` is what Twilio already sent (`connected`, `start`), replayed first. Returns the
    close code for Twilio's socket, which the caller sends: the owner's own code when it
    closed first, 1011 when the owner could not be reached, 1008 when it refused the upgrade.
    """
    extra = {"call_id": call_id}
    headers = {RELAYED_HEADER: "1"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    try:
        upstream = await connect(
            owner_stream_url,
            additional_headers=headers,
            compression=None,  # Twilio compresses nothing either; keep the CPU for audio
            open_timeout=CONNECT_TIMEOUT_S,
        )
    except InvalidStatus:
        logger.warning("media stream owner refused the relay", extra=extra)
        metrics.STREAM_RELAYS.labels(result="owner_refused").inc()
        return _POLICY
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI):
        logger.warning("media stream owner unreachable", extra=extra)
        metrics.STREAM_RELAYS.labels(result="owner_unreachable").inc()
        return _UNREACHABLE
    metrics.STREAM_RELAYS.labels(result="relayed").inc()
    logger.info("media stream relayed to the call's owner", extra=extra)
    async with upstream:
        try:
            for message in opening:
                await upstream.send(message)
        except ConnectionClosed:
            return _twilio_code(upstream)
        return await _pipe(upstream, receive, send)


async def _pipe(upstream: ClientConnection, receive: Receive, send: Send) -> int:
    """Both directions at once; whichever side closes first ends the other."""
    to_owner = asyncio.create_task(_twilio_to_owner(receive, upstream), name="relay-to-owner")
    to_twilio = asyncio.create_task(_owner_to_twilio(upstream, send), name="relay-to-twilio")
    try:
        await asyncio.wait({to_owner, to_twilio}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_owner, to_twilio):
            task.cancel()
        await asyncio.gather(to_owner, to_twilio, return_exceptions=True)
    if _ended_by_twilio(to_owner, to_twilio):
        await upstream.close(_NORMAL)  # tell the owner the stream ended, as Twilio said it
        return _NORMAL
    return _twilio_code(upstream)


def _ended_by_twilio(to_owner: asyncio.Task[bool], to_twilio: asyncio.Task[None]) -> bool:
    """Whether Twilio's side ended first (it closed, or could no longer be sent to)."""
    if to_owner.done() and not to_owner.cancelled() and to_owner.exception() is None:
        if to_owner.result():
            return True
    return to_twilio.done() and not to_twilio.cancelled() and to_twilio.exception() is not None


async def _twilio_to_owner(receive: Receive, upstream: ClientConnection) -> bool:
    """Twilio's messages to the owner; True when Twilio closed, False when the owner did."""
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return True
        text = message.get("text")
        try:
            await upstream.send(text if text is not None else message.get("bytes") or b"")
        except ConnectionClosed:
            return False


async def _owner_to_twilio(upstream: ClientConnection, send: Send) -> None:
    """The owner's messages to Twilio until the owner closes; a failed send to Twilio raises
    (uvicorn's ClientDisconnected is an OSError)."""
    with contextlib.suppress(ConnectionClosed):
        async for message in upstream:
            if isinstance(message, str):
                await send({"type": "websocket.send", "text": message})
            else:
                await send({"type": "websocket.send", "bytes": message})


def _twilio_code(upstream: ClientConnection) -> int:
    """The owner's close code, as Twilio's socket may be closed with it."""
    code = upstream.close_code
    if code is None or code in _RESERVED:
        return _UNREACHABLE
    return code
