"""The simulated agent on one Gemini Live connection: find the call, listen, follow the policy.

`SimAgents` is the `agent` handed to the Gemini stand-in (`sim.gemini_live_server`); it runs one
`AgentSession` per connection. The session first finds its call in the world from the caller
audio the bridge forwards (`FrameIndex.locate_pcm`; after `identify_timeout_s` it takes the
oldest call no model has claimed), then reacts to the connection's inbox: at the end of each of
the callee's turns (the server's energy VAD) it sends Gemini's `inputTranscription` of what the
venue said and plays the policy's moves: paced 24 kHz speech with its `outputTranscription`,
tool calls, `ask_user` and `end_call` (waiting for the answer only for a tool the client
declared BLOCKING; a SILENT answer gets no reaction). An agent line cut short by barge-in is
marked `interrupted` in the conversation so the venue does not answer it; an `ask_user` the
server withdrew on that barge-in is then answered only by a message. Between the model's
turns the session makes the connection cuts its call's `LiveQuirks` switch on (goAway, error
close). The policy is kept per call, so a replacement connection (resumption, a new stream after
DTMF) continues the same conversation.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
from typing import Any

import numpy as np

from sim import voice
from sim.agent import (
    AgentPolicy,
    Ask,
    Finish,
    Move,
    Speak,
    Tool,
    customer_reply,
    read_instructions,
    supervisor_cue,
)
from sim.gemini_live_server import FakeGeminiLive
from sim.live_connection import ClientEvent, LiveConnection, ToolResult, ToolsCancelled, UserTurn
from sim.live_quirks import LiveQuirks
from sim.world import Conversation, World

logger = logging.getLogger(__name__)

AGENT_PITCH_HZ = 185.0
GREET_WAIT_S = 1.5  # after the "callee answered" cue, how long to wait for their hello
SUPERVISOR_WAIT_S = 8.0  # at a voicemail, how long to wait to be told to leave a message
_TAP_KEEP_BYTES = 16_000  # ~0.5 s at 16 kHz: enough to find a frame start in any phase


class SimAgents:
    """Agent factory for the Gemini stand-in; holds each call's policy across connections."""

    def __init__(
        self,
        world: World,
        *,
        identify_timeout_s: float = 2.0,
        opening_wait_s: float = 6.0,
        customer_timeout_s: float = 90.0,
        overclaim: bool = False,
        quirks: LiveQuirks | None = None,
    ) -> None:
        self.world = world
        self.quirks = quirks  # for every call; None: each venue's own (`Venue.gemini`)
        self.turns: collections.Counter[str] = collections.Counter()  # model turns per call
        self.cuts: set[tuple[str, str]] = set()  # (call, cut) already made
        self.overclaim = overclaim  # test-only: every agent claims `booked` (see AgentPolicy)
        self.identify_timeout_s = identify_timeout_s
        self.opening_wait_s = opening_wait_s
        self.customer_timeout_s = customer_timeout_s
        self.voice = voice.Voice(AGENT_PITCH_HZ, word_ms=world.word_ms)
        self.policies: dict[str, AgentPolicy] = {}
        self.sessions: list[AgentSession] = []  # open sessions, for observation

    async def __call__(self, server: FakeGeminiLive, conn: LiveConnection) -> None:
        session = AgentSession(self, server, conn)
        self.sessions.append(session)
        try:
            await session.run()
        finally:
            self.sessions.remove(session)

    def quirks_for(self, conv: Conversation) -> LiveQuirks:
        return self.quirks or conv.venue.gemini

    def cut_once(self, conv: Conversation, cut: str) -> bool:
        """True the first time `cut` is asked for on this call (a resumed call goes on)."""
        if (conv.call_sid, cut) in self.cuts:
            return False
        self.cuts.add((conv.call_sid, cut))
        return True

    def policy_for(self, conv: Conversation, conn: LiveConnection) -> AgentPolicy:
        for sid in [s for s in self.policies if self.world.get(s) is None]:
            del self.policies[sid]  # calls long gone
            self.turns.pop(sid, None)
            self.cuts = {cut for cut in self.cuts if cut[0] != sid}
        policy = self.policies.get(conv.call_sid)
        if policy is None:
            instructions = read_instructions(conn.system_instruction)
            policy = AgentPolicy(instructions, datetime.date.today(), overclaim=self.overclaim)
            self.policies[conv.call_sid] = policy
        return policy


class AgentSession:
    """One connection's agent loop (see the module docstring)."""

    def __init__(self, agents: SimAgents, server: FakeGeminiLive, conn: LiveConnection) -> None:
        self.agents = agents
        self.server = server
        self.conn = conn
        self.conversation: Conversation | None = None
        self.moves: list[Move] = []  # every move played, for observation
        self._tap = collections.deque[tuple[bytes, int]]()
        self._tapped = 0
        self._ask_id: str | None = None
        self._asked_at = 0.0
        self._greet_at: float | None = None
        self._rng = np.random.default_rng()
        self._deferred: collections.deque[ClientEvent] = collections.deque()

    async def run(self) -> None:
        conv = await self._identify()
        conv.model_claimed = True
        self.conversation = conv
        self.conn.cancel_tools_on_barge_in = self.agents.quirks_for(conv).cancel_tools_on_barge_in
        try:
            await self._converse(conv, self.agents.policy_for(conv, self.conn))
        finally:
            conv.model_claimed = False

    # ---- which call is this? ------------------------------------------------------------

    def _on_audio(self, pcm: bytes, rate: int) -> None:
        self._tap.append((pcm, rate))
        self._tapped += len(pcm)
        while self._tapped > _TAP_KEEP_BYTES and len(self._tap) > 1:
            self._tapped -= len(self._tap.popleft()[0])

    async def _identify(self) -> Conversation:
        self.conn.audio_tap = self._on_audio
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.agents.identify_timeout_s
        try:
            while True:
                if self._tap:
                    rate = self._tap[-1][1]
                    pcm = b"".join(chunk for chunk, r in self._tap if r == rate)
                    found = self.agents.world.index.locate_pcm(pcm, rate)
                    if found is not None:
                        return found.conversation
                if loop.time() >= deadline and (conv := self.agents.world.unclaimed()):
                    logger.warning("sim agent fell back to the oldest unclaimed call")
                    return conv
                await asyncio.sleep(0.05)
        finally:
            self.conn.audio_tap = None

    # ---- the conversation ---------------------------------------------------------------

    def _deadline(self, policy: AgentPolicy) -> float | None:
        """When to act if nothing arrives: an unanswered question, or a greeting not given."""
        if policy.ended:
            return None
        if policy.pending == "supervisor":
            return self._asked_at + SUPERVISOR_WAIT_S
        if policy.pending is not None:
            return self._asked_at + self.agents.world.wait_s(self.agents.customer_timeout_s)
        if policy.introduced or self._greet_at is None:
            return None
        return self._greet_at

    async def _converse(self, conv: Conversation, policy: AgentPolicy) -> None:
        inbox = self.conn.inbox
        assert inbox is not None
        loop = asyncio.get_running_loop()
        self._greet_at = loop.time() + self.agents.opening_wait_s
        while not self.conn.closed.is_set():
            deadline = self._deadline(policy)
            if self._deferred:  # what arrived while a BLOCKING call had the model waiting
                event = self._deferred.popleft()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await inbox.get()
                except TimeoutError:
                    await self._on_deadline(conv, policy)
                    await self._cut(conv)
                    continue
            if isinstance(event, ToolResult):
                await self._tool_result(conv, policy, event)
            elif isinstance(event, ToolsCancelled):
                if self._ask_id in event.ids:
                    self._ask_id = None  # withdrawn: an answer now comes only as a message
            elif event.kind == "text":
                await self._text(conv, policy, event.text)
            else:
                await self._heard(conv, policy, event)
            await self._cut(conv)

    async def _cut(self, conv: Conversation) -> None:
        """The switched-on connection cuts (`LiveQuirks`), made between the model's turns."""
        quirks = self.agents.quirks_for(conv)
        turns = self.agents.turns[conv.call_sid]
        if self.conn.closed.is_set() or self._deferred or not self._idle():
            return  # not while the model still has unread input: the cut would lose it
        after = quirks.go_away_after_turn
        if after is not None and turns >= after and self.agents.cut_once(conv, "go_away"):
            await self.server.go_away_on(self.conn, quirks.go_away_time_left_s)
            return
        after = quirks.close_after_turn
        if after is not None and turns >= after and self.agents.cut_once(conv, "close"):
            await self.server.fail_on(self.conn, quirks.close_code, quirks.close_reason)

    def _idle(self) -> bool:
        return self.conn.inbox is None or self.conn.inbox.empty()

    async def _on_deadline(self, conv: Conversation, policy: AgentPolicy) -> None:
        if policy.pending is not None:
            await self._play(conv, policy, policy.on_customer_timeout())
            return
        self._greet_at = None
        if not conv.lines_after(0, "venue"):  # the callee has not said hello: go first
            await self._play(conv, policy, policy.introduce())

    async def _tool_result(
        self, conv: Conversation, policy: AgentPolicy, result: ToolResult
    ) -> None:
        if result.id != self._ask_id or result.scheduling == "SILENT":
            return  # a SILENT answer is taken in without a word
        answer = result.response.get("answer")
        if result.response.get("timed_out"):
            await self._play(conv, policy, policy.on_customer_timeout())
        elif isinstance(answer, str) and answer.strip():
            await self._play(conv, policy, policy.on_answer(answer))

    async def _text(self, conv: Conversation, policy: AgentPolicy, text: str) -> None:
        reply = customer_reply(text)
        if reply is not None:
            await self._play(conv, policy, policy.on_answer(reply))
            return
        cue = supervisor_cue(text)
        if cue is None:
            return
        moves = policy.on_supervisor(cue)
        if policy.greet_cued and not policy.introduced:
            # Let the callee say hello first if they are about to.
            self._greet_at = asyncio.get_running_loop().time() + GREET_WAIT_S
        await self._play(conv, policy, moves)

    async def _heard(self, conv: Conversation, policy: AgentPolicy, turn: UserTurn) -> None:
        lines = conv.lines_after(policy.heard_up_to, "venue")
        if not lines:
            return
        policy.heard_up_to = lines[-1].id
        if self.conn.input_transcription:
            text = " ".join(line.text for line in lines)
            transcript = {"inputTranscription": {"text": text}}
            await self.server.send_on(self.conn, {"serverContent": transcript})
        await self._play(conv, policy, policy.respond(lines[-1]))

    async def _play(self, conv: Conversation, policy: AgentPolicy, moves: list[Move]) -> None:
        for move in moves:
            if self.conn.closed.is_set():
                return
            self.moves.append(move)
            if isinstance(move, Speak):
                await self._speak(conv, policy, move)
            elif isinstance(move, Tool):
                await self._call(move.name, move.args)
                if move.name == "report_signal" and policy.pending == "supervisor":
                    self._asked_at = asyncio.get_running_loop().time()
            elif isinstance(move, Ask):
                args: dict[str, Any] = {"question": move.question}
                if move.options:
                    args["options"] = list(move.options)
                self._ask_id = await self._call("ask_user", args)
                self._asked_at = asyncio.get_running_loop().time()
            elif isinstance(move, Finish):
                await self._call("end_call", move.args)

    async def _call(self, name: str, args: dict[str, Any]) -> str:
        """Call a tool the way its declared behavior says: a NON_BLOCKING call lets the model
        go on at once; a BLOCKING one holds it (no words, no reactions) until the answer,
        and what arrives meanwhile is handled afterwards, in order."""
        call_id = await self.server.send_tool_call_on(self.conn, name, args)
        if not self.conn.blocks_on(name):
            return call_id
        inbox = self.conn.inbox
        assert inbox is not None
        while not self.conn.closed.is_set():
            closed = asyncio.ensure_future(self.conn.closed.wait())
            got = asyncio.ensure_future(inbox.get())
            try:
                await asyncio.wait({closed, got}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                if not got.done():
                    got.cancel()
            if got.done() and not got.cancelled():
                event = got.result()
                if isinstance(event, ToolResult) and event.id == call_id:
                    self._deferred.appendleft(event)  # its own reaction comes first
                    break
                self._deferred.append(event)
        return call_id

    async def _speak(self, conv: Conversation, policy: AgentPolicy, move: Speak) -> None:
        speech = await asyncio.to_thread(
            voice.speak, move.text, self.agents.voice, 24_000, self._rng
        )
        line = conv.new_line(
            "agent",
            move.act,
            move.text,
            policy.lang,
            dict(move.data),
            speech.words,
            speech.duration_s,
        )
        conv.add(line)
        result = await self.server.say_on(self.conn, speech.pcm, move.text)
        if result.interrupted:
            line.interrupted = True
        elif not result.connection_closed:
            self.agents.turns[conv.call_sid] += 1
