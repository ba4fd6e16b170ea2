"""Each Media Streams socket is bound to its call (issue #11): the takeover of a live call by a
second, validly signed socket fails, and the legitimate re-attach after a dropped stream works.

Driven like `test_bridge`: the production media app under uvicorn, real websockets on loopback,
the Gemini Live and Deepgram fakes, core behind the in-memory `CoreLink`. The upgrade signature
is the same for every socket (the URL is), so every impostor here passes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from telephony import stream_tokens
from tests.fakes.twilio_stream import TwilioStreamClient, mint_token
from tests.integration import test_bridge
from tests.integration.test_bridge import LOUD, TOKEN, World, started, tone_24k

# The bridge tests' world (media app, Gemini Live and Deepgram fakes), by fixture name.
gemini = test_bridge.gemini
deepgram = test_bridge.deepgram
ca_file = test_bridge.ca_file
world = test_bridge.world

REAL_SID = "CA" + "a" * 32
MADE_UP_SID = "CA" + "b" * 32
POLICY_VIOLATION = 1008


def impostor(
    world: World, call_sid: str, stream_token: str, call_id: str = "call-1"
) -> TwilioStreamClient:
    """A socket with a valid upgrade signature (not registered as the call's phone)."""
    return TwilioStreamClient(
        world.stream_url, TOKEN, call_id, call_sid=call_sid, stream_token=stream_token
    )


async def refused(client: TwilioStreamClient) -> None:
    """Connect `client`; it must be closed by the bridge with 1008 having received nothing."""
    await client.connect()
    try:
        assert await client.wait_closed() == POLICY_VIOLATION
    finally:
        await client.close()
    assert client.outbound == []


def forged_token() -> str:
    return f"v1.{int(time.time()) + 600}.0.{'A' * 43}"


@pytest.mark.parametrize("token", ["", "forged"], ids=["no-token", "forged-token"])
async def test_takeover_with_a_made_up_sid_is_refused_and_the_real_call_goes_on(
    world: World, token: str
) -> None:
    async with world.client(call_sid=REAL_SID) as client:
        link = await started(world)
        bridge = world.bridge()
        # The model is talking while the impostor tries: a takeover would get these frames.
        speech = asyncio.create_task(world.gemini.say(tone_24k(1000, LOUD), "Hello there."))
        await client.wait_until(lambda: len(client.media()) >= 5)
        await refused(impostor(world, MADE_UP_SID, forged_token() if token else ""))
        await speech
        await client.wait_until(lambda: len(client.media()) == 50)  # all 1000 ms, on stream 1
        assert world.bridge() is bridge and bridge.streaming and bridge.call_sid == REAL_SID
        assert bridge.playout.stats.frames_sent >= 50
        # The call still hears the callee and ends normally, on its own SID only.
        before = world.gemini.audio_bytes_received
        await world.gemini.wait_until(lambda: world.gemini.audio_bytes_received > before + 3200)
        link.hang_up("cancelled")
        await world.core.wait_until(lambda: link.closed)
    assert link.attaches == [("call-1", REAL_SID, client.stream_sid, "pod-a")]
    assert len(world.gemini.ready_connections) == 1
    assert world.phone.hangups == [REAL_SID]


async def test_a_token_for_another_call_or_an_expired_one_is_refused(world: World) -> None:
    async with world.client(call_sid=REAL_SID) as client:
        await started(world)
        other_call = mint_token(TOKEN, "call-2")
        await refused(impostor(world, REAL_SID, other_call))
        expired = mint_token(TOKEN, "call-1", REAL_SID, ttl_s=-1)
        await refused(impostor(world, REAL_SID, expired))
        bound_to_other_sid = mint_token(TOKEN, "call-1", MADE_UP_SID)
        await refused(impostor(world, REAL_SID, bound_to_other_sid))
        assert world.bridge().streaming
        await world.gemini.say(tone_24k(200, LOUD))
        await client.wait_until(lambda: len(client.media()) == 10)
    # A refused stream of an unknown call starts nothing at all.
    await refused(impostor(world, REAL_SID, mint_token(TOKEN, "call-3", ttl_s=-1), "call-3"))
    assert "call-3" not in world.app.state.registry.bridges and "call-3" not in world.core.links


async def test_a_second_socket_while_the_first_is_live_is_refused(world: World) -> None:
    async with world.client(call_sid=REAL_SID) as client:
        await started(world)
        # Everything right but the timing: the call already has a live stream.
        second = impostor(world, REAL_SID, mint_token(TOKEN, "call-1", REAL_SID))
        await refused(second)
        await world.gemini.say(tone_24k(200, LOUD))
        await client.wait_until(lambda: len(client.media()) == 10)
        assert world.bridge().streaming
    assert world.phone.hangups == []


async def test_reattach_after_the_first_stream_dropped_works_after_dtmf(world: World) -> None:
    world.deepgram.script_utterance("For reservations press 1.", at_audio_s=0.5)
    async with world.client(call_sid=REAL_SID) as client:
        link = await started(world)
        await world.core.wait_until(lambda: any(d.kind == "ivr" for d in link.decisions))
        assert await world.gemini.tool_call("send_dtmf", {"digits": "1"}) == {"result": "pressed 1"}
        # The first socket drops without a `stop` (a blip), the way a lost connection would.
        await client.close()
        bridge = world.bridge()
        await world.core.wait_until(lambda: not bridge.streaming)
        # Before the real stream returns, with the slot free: a valid dial-time token on a
        # made-up SID, and the real SID with another call's token or an expired one, are refused.
        await refused(impostor(world, MADE_UP_SID, mint_token(TOKEN, "call-1")))
        await refused(impostor(world, REAL_SID, mint_token(TOKEN, "call-2")))
        await refused(impostor(world, REAL_SID, mint_token(TOKEN, "call-1", REAL_SID, ttl_s=-1)))
        await refused(impostor(world, REAL_SID, ""))
        # Twilio's new stream carries the re-connect TwiML's token, bound to the call's SID.
        client.parameters[stream_tokens.PARAMETER] = mint_token(TOKEN, "call-1", REAL_SID)
        await client.connect()
        await world.gemini.say(tone_24k(200, LOUD))
        await client.wait_until(lambda: len(client.media(stream=2)) == 10)
        assert world.bridge() is bridge and bridge.streaming
    assert len(link.attaches) == 1 and len(world.gemini.ready_connections) == 1
    assert world.phone.hangups == []


async def test_a_new_stream_on_a_sid_core_does_not_know_starts_nothing(world: World) -> None:
    # The token is right (a dial-time one binds no SID), the SID is not the one core dialed.
    task_for = world.core.task_for
    world.core.task_for = lambda call_id: dataclasses.replace(task_for(call_id), call_sid=REAL_SID)
    client = impostor(world, MADE_UP_SID, mint_token(TOKEN, "call-1"))
    await client.connect()
    try:
        await client.wait_closed()
    finally:
        await client.close()
    link = await world.core.link("call-1")
    await world.core.wait_until(lambda: link.closed)
    assert client.outbound == []
    assert link.outcomes == [] and link.transcripts == []  # nothing reported for the call
    assert world.phone.hangups == []  # neither the made-up SID nor the real one
    assert world.gemini.ready_connections == []
