"""The DTMF re-connect reaches the media pod that owns the call, wherever Twilio lands it.

Two production media apps under uvicorn on loopback ports share one public URL (what Twilio
signs) as pods behind a load balancer do; each builds its real `TwilioTelephony` against the
simulated Twilio REST API (`sim.twilio_rest`), so the re-connect TwiML below is the one the
owner pod really sent. Core is the in-memory `CoreLink` shared by both pods (one core), the
model and the ear are the Gemini Live and Deepgram fakes. The test plays Twilio: it follows the
TwiML exactly (its `<Parameter>`s come back in `start.customParameters`) and picks the pod the
new stream lands on, which a load balancer would pick at random.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from media.call.core_link import CallTask
from media.codec import twilio_codec
from media.server import create_app
from media.settings import MediaSettings
from media.twilio.stream_endpoint import stream_url
from media.twilio.stream_relay import RELAYED_HEADER
from sim.carrier import Verb, parse_twiml
from sim.deepgram_server import FakeDeepgram
from sim.twilio_rest import FakeTwilioRest
from telephony import stream_tokens
from telephony.settings import TwilioSettings
from telephony.twilio_rest import TwilioTelephony
from tests.conftest import INTERNAL_TOKEN, free_port, serve_asgi
from tests.fakes.core_link import InMemoryCore, InMemoryCoreLink
from tests.fakes.gemini_live import FakeGeminiLive
from tests.fakes.twilio_stream import TwilioStreamClient
from tests.integration import test_bridge
from tests.integration.test_bridge import BRIEF, GEMINI_KEY, SOFT, RecordingSink, tone_24k

gemini = test_bridge.gemini
deepgram = test_bridge.deepgram
ca_file = test_bridge.ca_file

pytestmark = pytest.mark.timeout(60)

TO = "+15550100001"
UNREACHABLE = 1011
POLICY_VIOLATION = 1008


@dataclasses.dataclass
class Pod:
    name: str
    app: Any
    internal_url: str
    stream_url: str  # where this pod itself listens (the load balancer's backend)

    def bridges(self) -> dict[str, Any]:
        bridges: dict[str, Any] = self.app.state.registry.bridges
        return bridges


@dataclasses.dataclass
class Pods:
    rest: FakeTwilioRest
    core: InMemoryCore
    gemini: FakeGeminiLive
    deepgram: FakeDeepgram
    owner: Pod
    other: Pod
    public_stream_url: str
    call_sid: str = ""

    def signature(self) -> str:
        """Twilio's upgrade signature: over the public URL, whichever pod gets the socket."""
        validator = RequestValidator(self.rest.auth_token)
        return str(validator.compute_signature(self.public_stream_url, {}))

    def twilio_client(self, parameters: dict[str, str]) -> TwilioStreamClient:
        """Twilio's stream for the call, landing on the owner first (its first stream)."""
        client = TwilioStreamClient(
            self.owner.stream_url,
            self.rest.auth_token,
            parameters["call_id"],
            call_sid=self.call_sid,
            account_sid=self.rest.account_sid,
            signature=self.signature(),
        )
        client.parameters = dict(parameters)
        return client


def relays(result: str) -> float:
    return REGISTRY.get_sample_value("callagent_media_stream_relays_total", {"result": result}) or 0


def stream_verb(twiml: str) -> Verb:
    (verb,) = [v for v in parse_twiml(twiml) if v.name == "stream"]
    return verb


@contextlib.asynccontextmanager
async def two_pods(
    gemini: FakeGeminiLive,
    deepgram: FakeDeepgram,
    ca_file: str,
    *,
    owner_internal_url: str | None = None,
) -> AsyncIterator[Pods]:
    public = f"http://127.0.0.1:{free_port()}"  # the load balancer's URL; Twilio signs it
    core = InMemoryCore()
    async with FakeTwilioRest() as rest, contextlib.AsyncExitStack() as stack:
        twilio = TwilioSettings(
            twilio_account_sid=rest.account_sid,
            twilio_auth_token=rest.auth_token,
            public_base_url=public,
            twilio_api_base_url=rest.base_url,
        )
        pods = []
        for name in ("pod-a", "pod-b"):
            port = free_port()
            internal = f"ws://127.0.0.1:{port}"
            if name == "pod-a" and owner_internal_url is not None:
                internal = owner_internal_url
            media = MediaSettings(
                internal_token=INTERNAL_TOKEN,
                pod_name=name,
                media_internal_url=internal,
                gemini_api_key=GEMINI_KEY,
                gemini_base_url=gemini.base_url,
                gemini_ca_file=ca_file,
                deepgram_api_key=deepgram.api_key,
                deepgram_http_base=deepgram.http_base,
                deepgram_ws_base=deepgram.ws_base,
                reattach_timeout_sec=2.0,
            )
            app = create_app(media, twilio, core_links=core, sink=RecordingSink())
            await stack.enter_async_context(serve_asgi(app, port))
            pods.append(Pod(name, app, internal, f"ws://127.0.0.1:{port}/twilio/stream"))
        yield Pods(rest, core, gemini, deepgram, pods[0], pods[1], stream_url(public))


@pytest.fixture
async def pods(gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str) -> AsyncIterator[Pods]:
    async with two_pods(gemini, deepgram, ca_file) as p:
        yield p


async def dial(pods: Pods, call_id: str = "call-1") -> dict[str, str]:
    """Core dials through the carrier; return the first stream's parameters from its TwiML."""
    core_phone = TwilioTelephony(
        pods.rest.account_sid, pods.rest.auth_token, "+15005550006",
        pods.public_stream_url.replace("ws://", "http://").removesuffix("/twilio/stream"),
        pods.rest.base_url,
    )  # fmt: skip
    try:
        pods.call_sid = await core_phone.dial(call_id, TO)
    finally:
        await core_phone.aclose()
    sid = pods.call_sid
    pods.core.task_for = lambda cid: CallTask(
        cid, BRIEF, "en", "restaurant_booking", {}, "any", sid
    )
    verb = stream_verb(pods.rest.call(sid).form.get("Twiml") or "")
    assert verb.url == pods.public_stream_url
    return dict(verb.parameters)


async def press_one(pods: Pods, client: TwilioStreamClient) -> tuple[InMemoryCoreLink, Verb]:
    """Run the call on the owner until the agent pressed 1 at the menu; return core's link
    and the re-connect's `<Stream>` as the owner sent it to the carrier."""
    pods.deepgram.script_utterance("For reservations press 1.", at_audio_s=0.5)
    await client.connect()
    link = await pods.core.link("call-1")
    turn = await asyncio.wait_for(pods.gemini.next_user_turn(), 10)
    assert turn.kind == "text" and "answered the phone" in turn.text
    await pods.core.wait_until(lambda: any(d.kind == "ivr" for d in link.decisions))
    assert await pods.gemini.tool_call("send_dtmf", {"digits": "1"}) == {"result": "pressed 1"}
    (update,) = pods.rest.updates
    twiml = update.form.get("Twiml") or ""
    assert [v.name for v in parse_twiml(twiml)] == ["play_digits", "stream"]
    return link, stream_verb(twiml)


async def test_a_reconnect_on_another_pod_is_relayed_to_the_owner_and_the_call_goes_on(
    pods: Pods,
) -> None:
    client = pods.twilio_client(await dial(pods))
    relayed_before = relays("relayed")
    try:
        link, verb = await press_one(pods, client)
        params = dict(verb.parameters)
        assert verb.url == pods.public_stream_url  # the same public URL: any pod may get it
        assert params[stream_tokens.OWNER_PARAMETER] == pods.owner.internal_url
        first_stream = client.stream_sid

        # Twilio plays the digit, then the new stream lands on the other pod.
        client.parameters = params
        client.url = pods.other.stream_url
        await client.restart()
        conn = await pods.gemini.current()
        before = conn.audio_bytes
        await pods.gemini.wait_until(lambda: conn.audio_bytes > before + 6400)  # callee heard
        await pods.gemini.say(tone_24k(200, SOFT))
        await client.wait_until(lambda: len(client.media(stream=2)) == 10)  # agent heard
        assert relays("relayed") == relayed_before + 1

        # The owner's bridge carries the call; the other pod opened nothing for it.
        bridge = pods.owner.bridges()["call-1"]
        assert bridge.streaming and bridge.call_sid == pods.call_sid
        assert pods.other.bridges() == {}
        assert pods.core.links == {"call-1": link}
        assert link.attaches == [("call-1", pods.call_sid, first_stream, "pod-a")]
        assert len(pods.gemini.ready_connections) == 1  # one conversation

        # Core ends the call: the owner closes its socket and the relay closes Twilio's.
        link.hang_up("cancelled")
        await pods.core.wait_until(lambda: link.closed)
        assert await client.wait_closed() == 1000
    finally:
        await client.close()
    assert not [v for v in client.violations], client.violations
    assert [u.form.get("Status") for u in pods.rest.updates][1:] == ["completed"]


async def test_an_unreachable_owner_closes_twilios_socket_and_the_owner_settles_the_call(
    gemini: FakeGeminiLive, deepgram: FakeDeepgram, ca_file: str
) -> None:
    nobody = f"ws://127.0.0.1:{free_port()}"  # the owner's internal URL, where none listens
    async with two_pods(gemini, deepgram, ca_file, owner_internal_url=nobody) as pods:
        client = pods.twilio_client(await dial(pods))
        unreachable_before = relays("owner_unreachable")
        try:
            link, verb = await press_one(pods, client)
            assert dict(verb.parameters)[stream_tokens.OWNER_PARAMETER] == nobody
            client.parameters = dict(verb.parameters)
            client.url = pods.other.stream_url
            await client.restart()
            assert await client.wait_closed() == UNREACHABLE
            assert client.media(stream=2) == []
            assert relays("owner_unreachable") == unreachable_before + 1
            # The owner's bridge waited for its stream in vain and ended the call.
            await pods.core.wait_until(lambda: bool(link.outcomes), timeout_s=15)
        finally:
            await client.close()
        (outcome,) = link.outcomes
        assert outcome.outcome == "failed" and "did not resume" in outcome.summary
        assert pods.other.bridges() == {} and pods.core.links == {"call-1": link}
        assert len(link.attaches) == 1
        await pods.core.wait_until(lambda: link.closed)
        statuses = [u.form.get("Status") for u in pods.rest.updates]
        assert statuses[-1] == "completed"  # the carrier leg hung up by the owner


async def test_a_reconnect_that_lands_on_the_owner_attaches_without_a_relay(pods: Pods) -> None:
    client = pods.twilio_client(await dial(pods))
    relayed_before = relays("relayed")
    try:
        link, verb = await press_one(pods, client)
        client.parameters = dict(verb.parameters)
        await client.restart()  # the owner's own URL: it never relays to itself
        await pods.gemini.say(tone_24k(200, SOFT))
        await client.wait_until(lambda: len(client.media(stream=2)) == 10)
        assert pods.owner.bridges()["call-1"].streaming
    finally:
        await client.close()
    assert relays("relayed") == relayed_before
    assert len(link.attaches) == 1 and pods.other.bridges() == {}


async def test_a_relayed_stream_is_never_relayed_again_nor_opened_elsewhere(
    pods: Pods, caplog: pytest.LogCaptureFixture
) -> None:
    """A relayed upgrade that reaches a pod that is not the owner (a misrouted internal URL)
    is refused: relaying it on could loop, opening it would start a second conversation."""
    parameters = await dial(pods)
    sid = pods.call_sid
    key = stream_tokens.stream_key(pods.rest.auth_token)
    token = stream_tokens.mint(
        key,
        "call-1",
        expires_at=int(time.time()) + 600,
        call_sid=sid,
        owner=pods.owner.internal_url,
    )
    parameters |= {
        stream_tokens.PARAMETER: token,
        stream_tokens.OWNER_PARAMETER: pods.owner.internal_url,
    }
    headers = {"X-Twilio-Signature": pods.signature(), RELAYED_HEADER: "1"}
    relayed_before = relays("relayed")
    async with connect(pods.other.stream_url, additional_headers=headers) as ws:
        await ws.send(twilio_codec.connected())
        start = twilio_codec.start("MZ" + "1" * 32, sid, pods.rest.account_sid, parameters, seq=1)
        await ws.send(start)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)  # nothing is sent before the close
    assert ws.close_code == POLICY_VIOLATION
    refused = [r for r in caplog.records if r.msg == "media stream refused"]
    reasons = [getattr(r, "reason", None) for r in refused]
    assert reasons == ["relayed to a pod that does not own the call"]  # the token was good
    assert relays("relayed") == relayed_before
    assert pods.other.bridges() == {} and pods.owner.bridges() == {}
    assert pods.core.links == {}


def test_the_default_internal_url_is_this_pods_media_port_on_loopback() -> None:
    settings = MediaSettings(callagent_media_port=8123)
    assert settings.internal_url == "ws://127.0.0.1:8123"
    assert MediaSettings(media_internal_url="ws://10.0.3.7:8081/").internal_url == (
        "ws://10.0.3.7:8081"
    )
    with pytest.raises(ValueError):
        MediaSettings(media_internal_url="http://10.0.3.7:8081")
