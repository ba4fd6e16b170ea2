"""The world's shared memory: finding a call from its audio, transcripts, recordings, voices."""

from __future__ import annotations

import numpy as np
import pytest

from media.codec.audio import Upsampler8to16, pcm16_to_ulaw, ulaw_to_pcm16
from sim import truth, voice
from sim.carrier import parse_twiml, recording_words
from sim.deepgram_server import ListenSession
from sim.scenario_files import venue_for
from sim.world import FRAME_BYTES, Conversation, World, WorldTranscripts


def streamed(world: World, conv: Conversation, seconds: float, stream_no: int = 0) -> bytes:
    """What the carrier would send: noise frames, each registered before it leaves."""
    sent = bytearray()
    for _ in range(round(seconds * 50)):
        frame = voice.noise_mulaw(conv.rng, FRAME_BYTES)
        world.index.register(conv, stream_no, len(sent), frame)
        sent += frame
    return bytes(sent)


@pytest.fixture
def world() -> World:
    return World(speed=4.0)


def test_waits_are_compressed(world: World) -> None:
    assert world.wait_s(2.0) == 0.5


def test_received_mulaw_is_located_at_any_offset(world: World) -> None:
    a = world.open("CA-a", "+15550100", venue_for("+15550100"))
    b = world.open("CA-b", "+15550101", venue_for("+15550101"))
    audio_a, audio_b = streamed(world, a, 1.0), streamed(world, b, 1.0)
    for offset in (0, 7, 160, 333, 4000):
        found = world.index.locate(audio_a[offset:])
        assert found is not None and found.conversation is a and found.offset == offset
    found = world.index.locate(audio_b[55:])
    assert found is not None and found.conversation is b and found.offset == 55
    assert world.index.locate(voice.noise_mulaw(np.random.default_rng(9), 400)) is None


def test_decoded_audio_is_located_at_16_and_8_khz(world: World) -> None:
    conv = world.open("CA-pcm", "+15550100", venue_for("+15550100"))
    audio = streamed(world, conv, 1.0)
    up = Upsampler8to16()
    # The bridge upsamples 20 ms at a time; the sim sees any window of the result.
    pcm16k = b"".join(up.process(ulaw_to_pcm16(audio[i : i + 160])) for i in range(0, 8000, 160))
    found = world.index.locate_pcm(pcm16k[6400:8000], 16_000)
    assert found is not None and found.conversation is conv
    found = world.index.locate_pcm(ulaw_to_pcm16(audio[900:1300]), 8000)
    assert found is not None and found.conversation is conv and found.offset == 900


def test_forgotten_calls_are_not_found(world: World) -> None:
    conv = world.open("CA-gone", "+15550100", venue_for("+15550100"))
    audio = streamed(world, conv, 0.2)
    world.close(conv)
    assert world.index.locate(audio) is None
    assert len(world.index) == 0
    assert world.get("CA-gone") is conv  # kept a while for late lookups


def test_unclaimed_is_the_oldest_streaming_call(world: World) -> None:
    first = world.open("CA-1", "+15550100", venue_for("+15550100"))
    second = world.open("CA-2", "+15550100", venue_for("+15550100"))
    assert world.unclaimed() is None
    first.streaming = second.streaming = True
    assert world.unclaimed() is first
    first.model_claimed = True
    assert world.unclaimed() is second


def test_live_transcripts_are_on_the_sessions_own_clock(world: World) -> None:
    conv = world.open("CA-dg", "+15550100", venue_for("+15550100"))
    audio = streamed(world, conv, 2.0)
    line = conv.new_line(
        "venue",
        "greeting",
        "Hello there",
        "en",
        {},
        (
            ("Hello", 0.0, 0.3),
            ("there", 0.4, 0.7),
        ),
        0.7,
    )
    line.stream_no, line.stream_offset = 0, 8000  # starts 1 s into the stream
    conv.add(line)
    conv.add(conv.new_line("agent", "request", "Hi", "en", {}, (), 0.2))
    session = ListenSession(query={}, headers={})
    session.audio += audio[4000:]  # the ear joined half a second late
    found = WorldTranscripts(world).live(session)
    assert len(found) == 1
    utterance = found[0]
    assert utterance.text == "Hello there" and utterance.at_audio_s == 0.5
    assert [w["start"] for w in utterance.word_dicts()] == [0.5, 0.9]
    assert utterance.end_s == 1.2


def test_recordings_are_transcribed_by_content(world: World) -> None:
    world.add_recording(b"RIFF-one", [("Hello,", 0.5, 0.8), ("Anna.", 0.9, 1.2)])
    found = world.recording(b"RIFF-one")
    assert found is not None and found.text == "Hello, Anna."
    assert [(w["word"], w["start"]) for w in found.word_dicts()] == [("hello", 0.5), ("anna", 0.9)]
    assert world.recording(b"RIFF-two") is None


def test_recording_words_follow_the_track(world: World) -> None:
    conv = world.open("CA-rec", "+15550100", venue_for("+15550100"))
    said = conv.new_line("venue", "greeting", "Hello", "en", {}, (("Hello", 0.0, 0.4),), 0.4)
    said.recording_s = 0.1
    agent = conv.new_line(
        "agent",
        "request",
        "One two three",
        "en",
        {},
        (
            ("One", 0.0, 0.2),
            ("two", 0.3, 0.5),
            ("three", 0.6, 0.8),
        ),
        0.8,
    )
    agent.recording_s, agent.heard_s, agent.interrupted = 1.0, 0.4, True
    conv.add(said)
    conv.add(agent)
    # "two" was cut off as it was being said: it ends where the callee stopped hearing it
    assert recording_words(conv, "outbound") == [("One", 1.0, 1.2), ("two", 1.3, 1.4)]
    assert recording_words(conv, "inbound") == [("Hello", 0.1, 0.5)]
    assert [w for w, _, _ in recording_words(conv, "both")] == ["Hello", "One", "two"]


def test_true_turns_are_the_audible_lines_on_the_recordings_clock(world: World) -> None:
    conv = world.open("CA-truth", "+15550100", venue_for("+15550100"))
    hello = conv.new_line(
        "venue",
        "greeting",
        "Hello there",
        "en",
        {},
        (("Hello", 0.0, 0.4), ("there", 0.5, 0.8)),
        0.8,
    )
    request = conv.new_line(
        "agent",
        "request",
        "A table for four",
        "en",
        {},
        (("A", 0.0, 0.1), ("table", 0.2, 0.5), ("for", 0.6, 0.7), ("four", 0.8, 1.0)),
        1.0,
    )
    over = conv.new_line("venue", "barge_in", "Sorry", "en", {}, (("Sorry", 0.0, 0.3),), 0.3)
    unheard = conv.new_line("agent", "repeat", "Never heard", "en", {}, (("Never", 0.0, 0.3),), 0.3)
    hello.recording_s = 0.5
    request.recording_s, request.heard_s, request.interrupted = 1.75, 0.65, True
    over.recording_s = 2.2  # the callee talked over the agent
    for line in (hello, request, over, unheard):
        conv.add(line)
    assert truth.true_turns(conv) == [
        truth.TrueTurn("callee", 500, 1300, "Hello there"),
        truth.TrueTurn("agent", 1750, 2400, "A table for"),  # "for" cut at 0.65 s
        truth.TrueTurn("callee", 2200, 2500, "Sorry"),
    ]
    request.interrupted = False  # heard to the end: every word, to the last one's end
    assert truth.true_turns(conv)[1] == truth.TrueTurn("agent", 1750, 2750, "A table for four")


def test_parse_twiml_reads_digits_streams_and_parameters() -> None:
    twiml = (
        '<Response><Play digits="ww1"/><Say>ignored</Say><Connect>'
        '<Stream url="wss://bridge.example/twilio/stream">'
        '<Parameter name="call_id" value="c-1"/></Stream></Connect></Response>'
    )
    verbs = parse_twiml(twiml)
    assert [(v.name, v.digits, v.url, v.parameters) for v in verbs] == [
        ("play_digits", "ww1", "", ()),
        ("stream", "", "wss://bridge.example/twilio/stream", (("call_id", "c-1"),)),
    ]


def test_speech_is_voiced_timed_and_round_trips_through_mulaw() -> None:
    rng = np.random.default_rng(3)
    speech = voice.speak("Good evening, Trattoria Roma.", voice.Voice(150.0), 8000, rng)
    assert [w for w, _, _ in speech.words] == ["Good", "evening,", "Trattoria", "Roma."]
    starts = [s for _, s, _ in speech.words]
    assert starts == sorted(starts) and speech.words[-1][2] <= speech.duration_s + 1e-9
    assert voice.rms(speech.pcm) > 1000
    mulaw = voice.line_mulaw(speech.pcm, rng)
    noise = voice.noise_mulaw(rng, 8000)
    for audio in (mulaw, noise):
        assert b"\x7f" not in audio
        assert pcm16_to_ulaw(ulaw_to_pcm16(audio)) == audio  # decode + encode is lossless
    assert voice.rms(ulaw_to_pcm16(noise)) < 150
