"""The production DeepgramEar (deepgram-sdk) holding up against the loopback Deepgram: a lost
stream is reopened mid-call with no lost line and offsets on the call's clock, 429/5xx
handshakes are retried with backoff, a refused key is not, a spent budget ends in one EarLost,
KeepAlive keeps a silent stream open past the idle timeout, the task's language reaches the
query, and a `multi` stream reports the language it heard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from pydantic import SecretStr

from media.call.core_link import CallTask
from media.call.sessions import supervisor_ear
from media.providers.deepgram_ear import CalleeTranscript, DeepgramConfig, DeepgramEar, EarLost
from media.settings import MediaSettings
from sim.deepgram_server import FakeDeepgram, ListenSession, ScriptedUtterance

pytestmark = pytest.mark.timeout(30)

FRAME = b"\xff" * 160  # 20 ms of μ-law silence


class PerSession:
    """What the callee says on each successive live session (the n-th list for the n-th)."""

    def __init__(self, fake: FakeDeepgram, lines: list[list[tuple[str, float]]]) -> None:
        self._fake = fake
        self._lines = [
            [ScriptedUtterance(text, at, 0.3, key=(n, i)) for i, (text, at) in enumerate(said)]
            for n, said in enumerate(lines)
        ]

    def live(self, session: ListenSession) -> Sequence[ScriptedUtterance]:
        n = next(i for i, s in enumerate(self._fake.sessions) if s is session)
        return self._lines[n] if n < len(self._lines) else []

    def batch(self, body: bytes) -> ScriptedUtterance | None:
        return None


def config(fake: FakeDeepgram) -> DeepgramConfig:
    return DeepgramConfig(SecretStr(fake.api_key), http_base=fake.http_base, ws_base=fake.ws_base)


async def poll(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for a condition the fake cannot signal (the ear's own state), with a deadline."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110  # the ear signals nothing on reconnect
            await asyncio.sleep(0.01)


async def feed(ear: DeepgramEar, fake: FakeDeepgram, seconds: float) -> None:
    """Push silence frame by frame, each once the newest session holds all before it."""
    session = fake.sessions[-1]
    target = session.audio_bytes
    for _ in range(round(seconds * 50)):
        ear.push(FRAME)
        target += len(FRAME)
        await fake.wait_until(lambda t=target: session.audio_bytes >= t)  # type: ignore[misc]


class Heard:
    """Collects the ear's events in the background."""

    def __init__(self, ear: DeepgramEar) -> None:
        self.events: list[object] = []
        self._task = asyncio.create_task(self._collect(ear))

    async def _collect(self, ear: DeepgramEar) -> None:
        async for event in ear.events():
            self.events.append(event)

    @property
    def finals(self) -> list[CalleeTranscript]:
        return [e for e in self.events if isinstance(e, CalleeTranscript) and e.is_final]

    @property
    def lost(self) -> list[EarLost]:
        return [e for e in self.events if isinstance(e, EarLost)]

    async def ended(self) -> None:
        async with asyncio.timeout(10):
            await self._task


@pytest.fixture
async def fake() -> AsyncIterator[FakeDeepgram]:
    async with FakeDeepgram() as fake:
        yield fake


async def test_an_idle_timeout_close_is_reconnected_with_offsets_on_the_calls_clock() -> None:
    async with FakeDeepgram(idle_timeout_s=0.2) as fake:
        fake.source = PerSession(
            fake, [[("Hello, Roma speaking.", 0.2)], [("Are you still there?", 0.5)]]
        )
        ear = DeepgramEar(config(fake), keepalive_interval_s=30, backoff_s=0.01)
        heard = Heard(ear)
        async with ear:
            await fake.wait_until(lambda: bool(fake.sessions))
            await feed(ear, fake, 1.5)
            await poll(lambda: len(heard.finals) == 1)
            # No audio, no KeepAlive: Deepgram closes 1011 NET-0001, the ear comes back.
            await fake.wait_until(lambda: len(fake.sessions) == 2)
            await feed(ear, fake, 2.0)
            await poll(lambda: len(heard.finals) == 2)
        await heard.ended()
    assert fake.sessions[0].close_code == 1011
    assert [f.text for f in heard.finals] == ["Hello, Roma speaking.", "Are you still there?"]
    # The second stream's times start at 0: its line sits after the 1.5 s the first consumed.
    assert [f.start_s for f in heard.finals] == pytest.approx([0.2, 2.0])
    assert heard.finals[1].words[0][1:] == pytest.approx((2.0, 2.3))
    assert heard.lost == [] and ear.reconnects == 1


async def test_a_dropped_socket_is_reconnected_and_the_gaps_audio_is_sent(
    fake: FakeDeepgram,
) -> None:
    fake.source = PerSession(fake, [[("Good evening.", 0.2)], [("Table for two?", 0.5)]])
    ear = DeepgramEar(config(fake), backoff_s=0.3)
    heard = Heard(ear)
    async with ear:
        await fake.wait_until(lambda: bool(fake.sessions))
        await feed(ear, fake, 1.5)
        await poll(lambda: len(heard.finals) == 1)
        fake.drop()
        await poll(lambda: ear.reconnects == 1)
        assert len(fake.sessions) == 1  # in the backoff: nowhere to send audio to
        gap = bytes(range(256)) * 10  # 2560 bytes, recognisable on the next stream
        for offset in range(0, len(gap), 160):
            ear.push(gap[offset : offset + 160])
        await fake.wait_until(lambda: len(fake.sessions) == 2)
        await fake.wait_until(lambda: fake.sessions[1].audio_bytes >= len(gap))
        assert bytes(fake.sessions[1].audio[: len(gap)]) == gap
        await feed(ear, fake, 2.0)
        await poll(lambda: len(heard.finals) == 2)
    await heard.ended()
    assert [f.text for f in heard.finals] == ["Good evening.", "Table for two?"]
    assert [f.start_s for f in heard.finals] == pytest.approx([0.2, 2.0])
    assert heard.lost == []


async def test_a_429_on_reconnect_is_retried_until_deepgram_accepts(fake: FakeDeepgram) -> None:
    fake.source = PerSession(fake, [[], [("Still here.", 0.4)]])
    ear = DeepgramEar(config(fake), backoff_s=0.01)
    heard = Heard(ear)
    async with ear:
        await fake.wait_until(lambda: bool(fake.sessions))
        await feed(ear, fake, 2.0)  # a silent window: Deepgram has answered this stream
        fake.connect_failures = [429, 503]
        fake.drop()
        await fake.wait_until(lambda: len(fake.sessions) == 2)
        await feed(ear, fake, 1.5)
        await poll(lambda: len(heard.finals) == 1)
    await heard.ended()
    assert fake.rejected_upgrades == 2 and ear.reconnects == 3
    assert [(f.text, round(f.start_s, 3)) for f in heard.finals] == [("Still here.", 2.4)]
    assert heard.lost == []


async def test_a_refused_key_on_reconnect_is_not_retried(fake: FakeDeepgram) -> None:
    ear = DeepgramEar(config(fake), backoff_s=0.01)
    heard = Heard(ear)
    async with ear:
        await fake.wait_until(lambda: bool(fake.sessions))
        await feed(ear, fake, 2.0)
        fake.api_key = "rotated-key"
        fake.drop()
        await heard.ended()
    assert heard.lost == [EarLost("deepgram rejected the credentials (HTTP 401)")]
    assert fake.rejected_upgrades == 1 and len(fake.sessions) == 1


async def test_a_refused_key_at_start_is_not_retried(fake: FakeDeepgram) -> None:
    ear = DeepgramEar(
        DeepgramConfig(SecretStr("wrong"), http_base=fake.http_base, ws_base=fake.ws_base)
    )
    heard = Heard(ear)
    async with ear:
        await heard.ended()
    assert heard.lost == [EarLost("deepgram rejected the credentials (HTTP 401)")]
    assert fake.rejected_upgrades == 1 and ear.reconnects == 0


async def test_a_spent_reconnect_budget_ends_in_one_ear_lost(fake: FakeDeepgram) -> None:
    ear = DeepgramEar(config(fake), reconnect_attempts=2, backoff_s=0.01)
    heard = Heard(ear)
    async with ear:
        await fake.wait_until(lambda: bool(fake.sessions))
        await feed(ear, fake, 2.0)
        fake.connect_failures = [503] * 5
        fake.drop()
        await heard.ended()
        ear.push(FRAME)  # after the loss: ignored, never raises
    assert heard.lost == [EarLost("deepgram refused the stream (HTTP 503)")]
    assert fake.rejected_upgrades == 2 and len(fake.sessions) == 1
    assert fake.connect_failures == [503] * 3


async def test_streams_that_deepgram_never_answers_spend_the_budget() -> None:
    """Idle closes of streams that never got a message count as failures in a row."""
    async with FakeDeepgram(idle_timeout_s=0.05) as fake:
        ear = DeepgramEar(config(fake), keepalive_interval_s=30, reconnect_attempts=2)
        heard = Heard(ear)
        async with ear:
            await heard.ended()
    (lost,) = heard.lost
    assert "1011 NET-0001" in lost.reason
    assert len(fake.sessions) == 3


async def test_keepalive_keeps_a_silent_stream_open_past_the_idle_timeout() -> None:
    async with FakeDeepgram(idle_timeout_s=0.3) as fake:
        ear = DeepgramEar(config(fake), keepalive_interval_s=0.05)
        async with ear:
            # Twelve KeepAlives span well over the 0.3 s after which silence is closed.
            await fake.wait_until(lambda: bool(fake.sessions) and fake.sessions[0].keepalives >= 12)
            assert not fake.sessions[0].closed
    assert len(fake.sessions) == 1 and fake.sessions[0].close_code == 1000
    assert ear.reconnects == 0


@pytest.mark.parametrize(
    ("task_language", "deepgram_language"), [("ru", "ru"), ("en", "en-US"), ("auto", "multi")]
)
async def test_the_tasks_language_reaches_deepgrams_query(
    fake: FakeDeepgram, task_language: str, deepgram_language: str
) -> None:
    settings = MediaSettings(
        deepgram_api_key=SecretStr(fake.api_key),
        deepgram_ws_base=fake.ws_base,
        deepgram_http_base=fake.http_base,
    )
    task = CallTask("call-1", "Table for 2", task_language)
    ear = supervisor_ear(settings, task, "call-1")
    assert ear is not None
    async with ear:
        await fake.wait_until(lambda: bool(fake.sessions))
    assert fake.sessions[0].params["language"] == deepgram_language
    assert fake.violations == []


@pytest.mark.parametrize(
    ("language", "text", "heard"),
    [
        ("multi", "Столик на троих, пожалуйста.", "ru"),
        ("multi", "A table for three, please.", "en"),
        ("ru", "Столик на троих, пожалуйста.", ""),
    ],
)
async def test_a_multilingual_stream_reports_the_language_it_heard(
    fake: FakeDeepgram, language: str, text: str, heard: str
) -> None:
    fake.script_utterance(text, at_audio_s=0.2)
    ear = DeepgramEar(config(fake), language=language)
    events = Heard(ear)
    async with ear:
        await fake.wait_until(lambda: bool(fake.sessions))
        await feed(ear, fake, 2.5)
        await poll(lambda: len(events.finals) == 1)
    await events.ended()
    assert [(f.text, f.language) for f in events.finals] == [(text, heard)]
    results = fake.sessions[0].sent_of("Results")
    # A `multi` stream echoes its (empty) language hints on every result; others never do.
    assert all(
        ("languages_hinted" in r["channel"]["alternatives"][0]) == bool(heard) for r in results
    )
