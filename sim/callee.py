"""The venue on the phone: `VenueMind`'s replies, spoken on a stream with human timing.

The policy (`sim.venues.VenueMind`) decides *what* to say; this decides *when*, from what the
callee actually hears on the line (`StreamLeg` events), not from what the agent intended:
it answers after the agent's voice has played out and gone quiet, talks over it when the
persona does, nudges ("are you still there?") and finally hangs up when nobody speaks, and
leaves a voicemail beep after the machine's greeting. Which agent line was heard is read from
the shared conversation; a line the agent marked interrupted is heard but not answered.
All waits are simulated seconds (`World.wait_s`).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging

from sim import voice
from sim.media_stream import AgentFinished, AgentStarted, AgentTurn, StreamLeg
from sim.venues import Answering, HangUp, Reaction, Say, VenueMind
from sim.world import Conversation, Line, World

logger = logging.getLogger(__name__)

PICK_UP_S = 0.4  # "hello" comes a moment after the line opens
THINK_S = 0.5  # pause before answering
TALK_OVER_AFTER_S = 1.0  # an impatient venue lets the agent speak this long
PATIENCE_S = 20.0
PATIENCE_ON_HOLD_S = 60.0  # the agent said it is checking with its customer
MACHINE_PATIENCE_S = 6.0  # a voicemail box hangs up after this much silence
# SIM_SPEED compresses waits but not audio, so silence patience never drops below a gap
# that real-time audio can show on a loaded machine (else a pause mid-sentence ends calls).
MIN_REAL_PATIENCE_S = 1.5
AFTER_GOODBYE_S = 5.0


def venue_voice(name: str, word_ms: float) -> voice.Voice:
    """A stable voice per venue: pitch between 110 and 230 Hz."""
    pitch = 110 + hashlib.sha256(name.encode()).digest()[0] % 120
    return voice.Voice(pitch_hz=float(pitch), word_ms=word_ms)


class Callee:
    """One call's venue side. `converse(leg)` runs for one stream; the mind spans streams."""

    def __init__(self, world: World, conv: Conversation, *, today: datetime.date) -> None:
        self.world = world
        self.conv = conv
        self.mind = VenueMind(conv.venue, today)
        self.voice = venue_voice(conv.venue.name, world.word_ms)
        self.opening_done = asyncio.Event()
        self.opening_s = 0.0
        self.hung_up = False
        self._answered_up_to = 0  # agent lines already heard

    async def converse(self, leg: StreamLeg) -> None:
        """Talk on `leg` until it stops; a venue hang-up stops it (and sets `hung_up`)."""
        await asyncio.sleep(self.world.wait_s(PICK_UP_S))
        opening = self.mind.opening()
        if leg.hearing_agent and [r.act for r in opening if isinstance(r, Say)] == ["greeting"]:
            opening = []  # a person who hears the caller talking first just listens
        self.opening_s = await self._do(leg, opening)
        await leg.drained()
        self.opening_done.set()
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()  # patience counts only while nobody is talking
        while not leg.stopping and not self.hung_up:
            try:
                async with asyncio.timeout(0.25):
                    event = await leg.events.get()
            except TimeoutError:
                if leg.speaking or leg.hearing_agent:
                    quiet_since = loop.time()
                elif loop.time() - quiet_since >= max(
                    self.world.wait_s(self._patience()), MIN_REAL_PATIENCE_S
                ):
                    await self._lose_patience(leg)
                    quiet_since = loop.time()
                continue
            quiet_since = loop.time()
            if isinstance(event, AgentStarted):
                await self._agent_started(leg, event)
            elif isinstance(event, AgentTurn):
                self._agent_turn(event)
            elif isinstance(event, AgentFinished):
                await self._agent_finished(leg, event)

    async def _lose_patience(self, leg: StreamLeg) -> None:
        last = self.conv.last("venue")
        if last is not None and last.act == "goodbye":
            await self._do(leg, [HangUp()])
        else:
            await self._do(leg, self.mind.on_silence())

    def _patience(self) -> float:
        if self.conv.venue.answering is Answering.VOICEMAIL:
            return MACHINE_PATIENCE_S
        last_venue = self.conv.last("venue")
        if last_venue is not None and last_venue.act == "goodbye":
            return AFTER_GOODBYE_S
        last_agent = self.conv.last("agent")
        if last_agent is not None and last_agent.act in ("hold", "still_checking"):
            return PATIENCE_ON_HOLD_S
        return PATIENCE_S

    async def _agent_started(self, leg: StreamLeg, event: AgentStarted) -> None:
        current = self.conv.last("agent")
        if current is None:
            return
        if current.recording_s is None:
            current.recording_s = event.at_s
        reactions = self.mind.on_agent_started(current.act)
        if reactions:
            await asyncio.sleep(self.world.wait_s(TALK_OVER_AFTER_S))
            await self._do(leg, reactions)

    def _agent_turn(self, event: AgentTurn) -> None:
        """The agent's next line began without a pause: it starts here, and the line heard
        before it ended where its voice did (bookkeeping only; nobody reacts mid-run)."""
        current = self.conv.last("agent")
        if current is None or current.recording_s is not None:
            return
        for line in reversed(self.conv.lines):
            if line.speaker == "agent" and line.recording_s is not None:
                if line.heard_s is None:
                    line.heard_s = round(event.prev_end_s - line.recording_s, 3)
                break
        current.recording_s = event.at_s

    async def _agent_finished(self, leg: StreamLeg, event: AgentFinished) -> None:
        heard = self._unheard()
        if not heard:
            return
        self._answered_up_to = heard[-1].id
        last = heard[-1]
        # Heard since its own start, which is the run's start unless it began mid-run.
        start = last.recording_s
        last.heard_s = event.heard_s if start is None else round(event.end_s - start, 3)
        complete = [x for x in heard if not x.interrupted]
        if not complete:
            return  # cut off by a barge-in: nothing to answer yet
        line = complete[-1]
        await asyncio.sleep(self.world.wait_s(THINK_S))
        await self._do(leg, self.mind.hear(line.act, line.language, line.data))

    def _unheard(self) -> list[Line]:
        return self.conv.lines_after(self._answered_up_to, "agent")

    async def _do(self, leg: StreamLeg, reactions: list[Reaction]) -> float:
        """Speak (or hang up); returns the seconds of audio queued."""
        queued = 0.0
        for reaction in reactions:
            if isinstance(reaction, HangUp):
                await leg.drained()
                await asyncio.sleep(self.world.wait_s(0.2))
                self.hung_up = True
                leg.stop()
                break
            line, audio = await self._render(reaction)
            leg.speak(line, audio)
            queued += line.duration_s
        return queued

    async def _render(self, say: Say) -> tuple[Line, bytes]:
        """Synthesised off the event loop: a line takes ~50 ms of numpy, which would stall
        every other call's audio clock in the same process."""
        lang = self.mind.lang
        speech = await asyncio.to_thread(voice.speak, say.text, self.voice, 8000, self.conv.rng)
        pcm = speech.pcm
        if say.act == "voicemail_greeting":
            pcm += voice.silence(8000, 0.3) + voice.beep(8000)
        mulaw = await asyncio.to_thread(voice.line_mulaw, pcm, self.conv.rng)
        line = self.conv.new_line(
            "venue", say.act, say.text, lang, dict(say.data), speech.words, len(pcm) / 16000
        )
        return line, mulaw
