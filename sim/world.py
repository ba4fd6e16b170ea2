"""The simulated world's shared memory: one `Conversation` per call, seen by every stand-in.

The carrier (callee side), the Gemini stand-in (agent side) and the Deepgram stand-in (the
ear) are separate servers that the production code connects to independently, so they must
find the same call on their own. The carrier knows the Twilio call sid; Gemini and Deepgram
see only audio. Every 20 ms frame the carrier sends carries this call's background noise,
so the first bytes of it identify the call: `FrameIndex` maps a short prefix of every sent
frame to (conversation, stream, offset). Deepgram receives those μ-law bytes unchanged;
Gemini receives them decoded (and at 16 kHz every other sample is passed through unchanged
by the bridge's 8 -> 16 kHz upsampler), so re-encoding recovers the same bytes. If identification
fails (an unexpected transform), the oldest conversation no model has claimed is used.

A conversation's `lines` are what each side said: text, act and details (what the other
side "understood"), word timings, and where the audio sits in the stream and recording.
`WorldTranscripts` turns them into the Deepgram stand-in's live and batch results.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np

from sim import codec
from sim.deepgram_server import MULAW_BYTES_PER_S, ListenSession, ScriptedUtterance
from sim.venues import Venue
from sim.voice import WordTiming

logger = logging.getLogger(__name__)

Speaker = Literal["venue", "agent"]
FRAME_BYTES = 160
KEY_BYTES = 12
_KEEP_CLOSED = 64  # finished conversations kept for late lookups (batch transcription)


@dataclasses.dataclass(slots=True, eq=False)
class Line:
    """One utterance. Venue lines get `stream_*` when their audio starts going out; agent
    lines get `recording_s`/`heard_s` when the callee hears them."""

    id: int
    speaker: Speaker
    act: str
    text: str
    language: str
    data: dict[str, str]
    words: tuple[WordTiming, ...]
    duration_s: float
    stream_no: int = -1
    stream_offset: int = -1
    recording_s: float | None = None
    heard_s: float | None = None
    interrupted: bool = False


class Conversation:
    """Everything known about one call; mutated only from the event loop, read by all three
    stand-ins (`digits_pressed` and `model_claimed` included)."""

    def __init__(self, call_sid: str, to: str, venue: Venue, *, seed: int) -> None:
        self.call_sid = call_sid
        self.to = to
        self.venue = venue
        self.call_id: str | None = None
        self.lines: list[Line] = []
        self.streams = 0
        self.digits_pressed = ""
        self.streaming = False
        self.ended = False
        self.model_claimed = False
        self.rng = np.random.default_rng(seed)
        self._ids = itertools.count(1)

    def new_line(
        self,
        speaker: Speaker,
        act: str,
        text: str,
        language: str,
        data: dict[str, str],
        words: tuple[WordTiming, ...],
        duration_s: float,
    ) -> Line:
        """A line not yet spoken; `add()` it when its audio starts."""
        return Line(next(self._ids), speaker, act, text, language, data, words, duration_s)

    def add(self, line: Line) -> None:
        self.lines.append(line)

    def lines_after(self, line_id: int, speaker: Speaker) -> list[Line]:
        return [x for x in self.lines if x.id > line_id and x.speaker == speaker]

    def last(self, speaker: Speaker) -> Line | None:
        return next((x for x in reversed(self.lines) if x.speaker == speaker), None)

    def end(self) -> None:
        self.ended = True
        self.streaming = False


@dataclasses.dataclass(frozen=True, slots=True)
class Located:
    """Where some received audio came from: byte 0 of it is `offset` bytes into the stream."""

    conversation: Conversation
    stream_no: int
    offset: int


class FrameIndex:
    """Prefix of every frame the carrier sent → where it was sent (see module docstring)."""

    def __init__(self) -> None:
        self._where: dict[bytes, tuple[Conversation, int, int]] = {}
        self._keys: dict[str, list[bytes]] = collections.defaultdict(list)

    def __len__(self) -> int:
        return len(self._where)

    def register(self, conv: Conversation, stream_no: int, offset: int, frame: bytes) -> None:
        key = frame[:KEY_BYTES]
        if len(key) == KEY_BYTES:
            self._where[key] = (conv, stream_no, offset)
            self._keys[conv.call_sid].append(key)

    def forget(self, conv: Conversation) -> None:
        for key in self._keys.pop(conv.call_sid, []):
            self._where.pop(key, None)

    def at(self, key: bytes) -> tuple[Conversation, int, int] | None:
        return self._where.get(key)

    def locate(self, mulaw: bytes) -> Located | None:
        """Find a registered frame start anywhere in the first frame of `mulaw`."""
        for o in range(min(FRAME_BYTES, len(mulaw) - KEY_BYTES + 1)):
            hit = self._where.get(mulaw[o : o + KEY_BYTES])
            if hit is not None:
                conv, stream_no, offset = hit
                return Located(conv, stream_no, offset - o)
        return None

    def locate_pcm(self, pcm16: bytes, rate: int) -> Located | None:
        """Find the call in decoded audio: 8 kHz as is, or either phase of 16 kHz."""
        samples = np.frombuffer(pcm16[: len(pcm16) // 2 * 2], dtype="<i2")
        candidates = [samples] if rate == 8000 else [samples[1::2], samples[0::2]]
        if rate not in (8000, 16000):
            return None
        for candidate in candidates:
            found = self.locate(codec.ulaw_encode(candidate.tobytes()))
            if found is not None:
                return found
        return None


class World:
    """All live conversations plus the lookups the stand-ins need; `speed` compresses waits."""

    def __init__(self, *, speed: float = 1.0, word_ms: float = 300.0) -> None:
        self.speed = speed
        self.word_ms = word_ms
        self.index = FrameIndex()
        self.conversations: dict[str, Conversation] = {}
        self._closed: collections.deque[Conversation] = collections.deque(maxlen=_KEEP_CLOSED)
        self._recordings: collections.OrderedDict[str, ScriptedUtterance] = (
            collections.OrderedDict()
        )
        self._seeds = itertools.count(1)

    def wait_s(self, seconds: float) -> float:
        """A simulated wait of `seconds`, compressed by SIM_SPEED."""
        return seconds / self.speed

    def open(self, call_sid: str, to: str, venue: Venue) -> Conversation:
        seed = int.from_bytes(hashlib.sha256(call_sid.encode()).digest()[:8], "big")
        conv = Conversation(call_sid, to, venue, seed=seed + next(self._seeds))
        self.conversations[call_sid] = conv
        return conv

    def get(self, call_sid: str) -> Conversation | None:
        found = self.conversations.get(call_sid)
        return found or next((c for c in self._closed if c.call_sid == call_sid), None)

    def close(self, conv: Conversation) -> None:
        conv.end()
        self.index.forget(conv)
        if self.conversations.pop(conv.call_sid, None) is not None:
            self._closed.append(conv)

    def known(self) -> list[Conversation]:
        """Every conversation still remembered: finished ones, then live ones, oldest first."""
        return [*self._closed, *self.conversations.values()]

    def unclaimed(self) -> Conversation | None:
        """The oldest streaming conversation no model has claimed (identification fallback)."""
        for conv in self.conversations.values():
            if conv.streaming and not conv.model_claimed:
                return conv
        return None

    def add_recording(
        self, media: bytes, words: Sequence[WordTiming], duration_s: float | None = None
    ) -> None:
        """Remember a recording's words (and its length, if known) so the Deepgram stand-in
        can transcribe its bytes."""
        text = " ".join(w for w, _, _ in words)
        timings = tuple((s, e) for _, s, e in words)
        key = hashlib.sha256(media).hexdigest()
        self._recordings[key] = ScriptedUtterance(
            text, 0.0, 0.3, timings=timings, audio_s=duration_s
        )
        while len(self._recordings) > _KEEP_CLOSED:
            self._recordings.popitem(last=False)

    def recording(self, media: bytes) -> ScriptedUtterance | None:
        return self._recordings.get(hashlib.sha256(media).hexdigest())


@dataclasses.dataclass(slots=True)
class _Binding:
    conv: Conversation
    stream_no: int
    delta: int  # stream offset - session offset
    cache: dict[int, ScriptedUtterance] = dataclasses.field(default_factory=dict)


class WorldTranscripts:
    """The Deepgram stand-in's `TranscriptSource`: callee lines on each session's clock."""

    def __init__(self, world: World) -> None:
        self._world = world

    def live(self, session: ListenSession) -> Sequence[ScriptedUtterance]:
        binding = self._bind(session)
        if binding is None:
            return []
        found: list[ScriptedUtterance] = []
        for line in binding.conv.lines:
            if line.speaker != "venue" or line.stream_no != binding.stream_no:
                continue
            at = (line.stream_offset - binding.delta) / MULAW_BYTES_PER_S
            if at < 0:
                continue
            u = binding.cache.get(line.id)
            if u is None:
                timings = tuple((s, e) for _, s, e in line.words)
                u = ScriptedUtterance(line.text, round(at, 3), 0.3, timings=timings, key=line.id)
                binding.cache[line.id] = u
            found.append(u)
        return found

    def batch(self, body: bytes) -> ScriptedUtterance | None:
        return self._world.recording(body)

    def _bind(self, session: ListenSession) -> _Binding | None:
        audio = session.audio
        binding: _Binding | None = session.context.get("binding")
        if binding is not None:
            # Still the same stream? Check the newest whole frame boundary.
            p = len(audio) - KEY_BYTES
            p -= (p + binding.delta) % FRAME_BYTES
            hit = self._world.index.at(bytes(audio[p : p + KEY_BYTES])) if p >= 0 else None
            if hit is None or hit == (binding.conv, binding.stream_no, p + binding.delta):
                return binding  # unknown bytes (e.g. a forgotten call) keep the old binding
        tail_start = max(0, len(audio) - 2 * FRAME_BYTES)
        found = self._world.index.locate(bytes(audio[tail_start:]))
        if found is None:
            return binding
        new = _Binding(found.conversation, found.stream_no, found.offset - tail_start)
        session.context["binding"] = new
        return new
