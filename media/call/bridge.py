"""One live call: the Twilio Media Stream ⇄ Gemini Live, Deepgram listening in, core informed.

A `CallBridge` lives from a call's first media stream to its end, across stream replacements
(DTMF re-opens the stream). Its stages share one `asyncio.TaskGroup`: one failing ends them all:

    Twilio media ─► InboundAudio (8k -> 16k, bounded) ─► GeminiLiveSession.send_audio
                └─► EarFeed ─► DeepgramEar.push (μ-law as is) ─► transcripts, Supervisor
    GeminiLiveSession.events() ─► Playout (24k -> 8k μ-law, paced, marks, clear) ─► Twilio
                               └─► ToolRelay (ask_user, end_call, send_dtmf, report_signal)
    CoreLink.commands() ─► answers to ask_user, hang-up

Ending is one path whatever the cause (`media.call.ending`): outcome to core first, then the
goodbye heard (bounded), then the hang-up. A DTMF press replaces the stream: the registry hands
the new stream of the same call id to `attach_stream()`, and the conversation, the core session
and the queued audio carry on, or the call fails after `reattach_timeout_sec` without one.

Each utterance is reported to core once (finals only): the agent's from Gemini's output
transcription, the callee's from the ear (`supervisor_stt`, flushed at the end), or from
Gemini's input transcription (`gemini`) once the ear is lost or if there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Coroutine
from typing import Any

from media.call import core_link, ending, usage
from media.call.agent_times import AgentTimes
from media.call.deps import BridgeDeps
from media.call.ending import CallEnding
from media.call.inbound import EarFeed, InboundAudio
from media.call.lines import GeminiLines, Line
from media.call.playout import Playout, StreamLeg
from media.call.sessions import live_session, supervisor_ear
from media.call.supervisor import Action, Decision, Supervisor, SupervisorSettings
from media.call.tools import ToolRelay
from media.codec import audio
from media.providers import agent_prompt
from media.providers.deepgram_ear import CalleeTranscript, DeepgramEar, EarLost
from media.providers.gemini_live import (
    AudioOut,
    GeminiLiveError,
    GeminiLiveSession,
    GenerationComplete,
    InputTranscript,
    Interrupted,
    OutputTranscript,
    Resumed,
    SessionLost,
    TokensUsed,
    ToolCall,
    ToolCallCancelled,
    TurnComplete,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

logger = logging.getLogger(__name__)


class _CallOver(Exception):
    """Raised in the call's task group once the call is over, to stop every stage."""


class CallBridge:
    """The pipeline of one call; `run()` until the call is over (see the module docstring)."""

    CLOCK_TICK_S = 0.25
    VOICE_RMS = 300  # PCM16 level above which a caller frame counts as someone talking

    def __init__(self, deps: BridgeDeps, call_id: str, call_sid: str, leg: StreamLeg) -> None:
        self.call_id = call_id
        self.call_sid = call_sid
        self._deps = deps
        self._s = deps.settings
        self._stream_sid = leg.stream_sid
        self._leg: StreamLeg | None = leg
        self._log = {"call_id": call_id, "call_sid": call_sid}
        self._t0 = time.monotonic()
        self._last_voice = self._t0  # someone audible (caller energy or model audio)
        self._last_words = self._t0  # someone said words (for the supervisor's hold rule)
        self._inbound = inbound = InboundAudio()
        self._playout = Playout(self._s.outbound_lead_ms, stream_ms=lambda: inbound.received_ms)
        self._playout.attach(leg)
        self._usage = usage.CallUsage()
        self._ear_feed = EarFeed(self._usage.add_ear_audio)  # a backlog until the ear is built
        self._supervisor = Supervisor(
            SupervisorSettings(
                voicemail_action=Action(self._s.voicemail_action),
                hold_give_up_s=self._s.hold_give_up_sec,
            )
        )
        self._link: core_link.CoreLink | None = None
        self._live: GeminiLiveSession | None = None
        self._ear: DeepgramEar | None = None
        self._tools: ToolRelay | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._model_quiet = asyncio.Event()
        self._model_quiet.set()
        self._turn_started = 0.0  # monotonic time of the current model turn's first audio
        self._ending = CallEnding(
            deps.phone,
            call_sid,
            self._playout,
            self._model_quiet,
            goodbye_timeout_s=self._s.goodbye_timeout_sec,
            log_extra=self._log,
        )
        self._wrap_up: core_link.Outcome | None = None
        self._wrap_up_at = 0.0
        self._expect_stream = False
        self._degraded = False
        self._pending_amd: list[str] = []
        self._lines = GeminiLines()  # Gemini's transcription, one line per utterance
        self._agent_times = AgentTimes(self._playout, self._t0)
        self.resumes = 0
        self.done = False

    @property
    def streaming(self) -> bool:
        """Whether a stream is attached now (until it stops or its socket closes)."""
        return self._leg is not None

    @property
    def playout(self) -> Playout:
        return self._playout

    @property
    def inbound(self) -> InboundAudio:
        return self._inbound

    # ---- the Twilio side (called by the stream endpoint) --------------------------------------

    def attach_stream(self, leg: StreamLeg) -> None:
        """A new stream of this call started (after DTMF): continue on it."""
        logger.info("media stream re-attached", extra={**self._log, "stream_sid": leg.stream_sid})
        self._leg = leg
        self._expect_stream = False
        self._playout.attach(leg)

    async def on_media(self, mulaw: bytes) -> None:
        self._ear_feed.push(mulaw)
        pcm8k = audio.ulaw_to_pcm16(mulaw)
        if audioop.rms(pcm8k, 2) >= self.VOICE_RMS:
            self._last_voice = time.monotonic()
        await self._inbound.push(pcm8k)

    def on_mark(self, name: str) -> None:
        self._playout.on_mark_echo(name)
        self._send_agent(self._agent_times.ready(time.monotonic()))

    def stream_ended(self, leg: StreamLeg) -> None:
        """The stream `leg` stopped or its socket closed."""
        if leg is not self._leg or self.done:
            return
        self._leg = None
        self._playout.detach(leg)
        if self._expect_stream:
            self._spawn(self._await_stream())
            return
        gone = core_link.Outcome("failed", "The other side hung up before the task was resolved.")
        self._ending.end(gone, goodbye=False, hang_up=False, reason="stream stopped")

    def on_amd(self, answered_by: str) -> None:
        """Twilio's async answering-machine detection result for this call."""
        if self._tg is None:
            self._pending_amd.append(answered_by)
        else:
            self._apply(self._supervisor.on_amd(answered_by, self._clock()))

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except Exception:
            logger.exception("call bridge failed", extra=self._log)
            self._ending.report(core_link.Outcome("failed", "The call's media pipeline failed."))
            await self._ending.hang_up()
        finally:
            self.done = True
            leg, self._leg = self._leg, None
            if leg is not None:
                await leg.close()
            if self._link is not None:
                self._link.send_usage(self._usage.totals())  # the ear is closed: final totals
                await self._link.aclose()

    async def _run(self) -> None:
        self._link = link = self._deps.core_links()
        self._ending.link = link
        pod = self._deps.pod
        try:
            task = await link.attach(self.call_id, self.call_sid, self._stream_sid, pod)
        except core_link.CoreLinkError as exc:
            logger.warning("core refused the call: %s", exc, extra=self._log)
            await self._ending.hang_up()
            return
        if task.call_sid and task.call_sid != self.call_sid:
            # Not this call's stream (a made-up callSid): refused before any frame went out,
            # and nothing of the real call is touched (no outcome, no hang-up of either SID).
            logger.warning(
                "media stream refused: not the call's sid", extra={"call_id": self.call_id}
            )
            return
        self._live = live = live_session(self._s, self._deps.gemini_client, task, self.call_id)
        try:
            await live.start()
        except GeminiLiveError as exc:
            logger.error("gemini live unavailable: %s", exc, extra=self._log)
            self._ending.report(
                core_link.Outcome("failed", "The voice model could not be reached.")
            )
            await self._ending.hang_up()
            return
        self._ear = ear = supervisor_ear(self._s, task, self.call_id)
        self._ear_feed.start(ear)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._ending.spawn = self._spawn
                self._tools = ToolRelay(
                    live,
                    link,
                    self._deps.phone,
                    self._spawn,
                    call_id=self.call_id,
                    call_sid=self.call_sid,
                    ask_timeout_s=self._s.ask_user_timeout_sec,
                    on_end_call=self._agent_ended,
                    on_dtmf=self._dtmf_sent,
                )
                tg.create_task(self._playout.run(), name="playout")
                self._inbound.start(live)
                tg.create_task(self._model_events(live), name="model-events")
                tg.create_task(self._core_commands(link), name="core-commands")
                tg.create_task(self._tick(), name="call-clock")
                heard = None
                if self._ear is not None:
                    self._ear.start()
                    heard = tg.create_task(self._ear_events(self._ear), name="ear-events")
                else:
                    self._apply(self._supervisor.on_ear_lost("not configured", self._clock()))
                for answered_by in self._pending_amd:
                    self._apply(self._supervisor.on_amd(answered_by, self._clock()))
                if self._leg is None and not self._expect_stream:
                    self._ending.end(None, goodbye=False, hang_up=False, reason="stream stopped")
                elif self._wrap_up is None and not self._ending.started:
                    await self._say(agent_prompt.greeting_cue())
                await self._ending.over.wait()
                self._report(self._lines.close())
                self._send_agent(self._agent_times.ready(time.monotonic(), flush=True))
                if self._ear is not None and heard is not None:  # the callee's last words:
                    await self._ear.aclose()  # CloseStream flushes them, ear-events reports
                    await heard
                raise _CallOver
        except* _CallOver:
            pass
        finally:
            self._tg = None
            self._ending.spawn = None
            await live.aclose()
            if self._ear is not None:
                await self._ear.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        if self._tg is not None:
            with contextlib.suppress(RuntimeError):  # the group is done: a late stop, say
                return self._tg.create_task(coro)
        coro.close()
        return None

    def _clock(self) -> float:
        return time.monotonic() - self._t0

    # ---- stages ----------------------------------------------------------------------------

    async def _model_events(self, live: GeminiLiveSession) -> None:
        playout = self._playout
        async for event in live.events():
            if type(event) is AudioOut:  # the hot path: ~25 chunks a second
                if self._model_quiet.is_set():
                    self._model_quiet.clear()
                    self._turn_started = time.monotonic()
                    self._report(self._lines.model_started())
                await playout.push_audio(event.pcm24k)
                self._last_voice = self._last_words = time.monotonic()
            elif isinstance(event, Interrupted):
                dropped = await playout.barge_in()
                self._model_quiet.set()
                self._report(self._lines.interrupted())
                logger.debug("barge-in", extra={**self._log, "frames_dropped": dropped})
            elif isinstance(event, TurnComplete):
                await playout.end_utterance()
                self._report(self._lines.turn_complete())
                if not self._model_quiet.is_set():
                    self._model_quiet.set()
                    if self._wrap_up is not None and self._turn_started > self._wrap_up_at:
                        self._ending.end(self._wrap_up, goodbye=True, reason="wrap-up said")
            elif isinstance(event, GenerationComplete):
                self._report(self._lines.generation_complete())
            elif isinstance(event, OutputTranscript):
                now = time.monotonic()
                at_ms = round((now - self._t0) * 1000)
                self._report(self._lines.said(event.text, at_ms, playout.turns, now))
            elif isinstance(event, InputTranscript):
                now = time.monotonic()
                self._lines.heard(event.text, round((now - self._t0) * 1000), now)
            elif isinstance(event, ToolCall):
                assert self._tools is not None
                self._tools.handle(event)
            elif isinstance(event, ToolCallCancelled):
                assert self._tools is not None
                self._tools.cancel(event.ids)
            elif isinstance(event, TokensUsed):
                self._usage.add_tokens(event)
                if self._link is not None:
                    self._link.send_usage(self._usage.totals())
            elif isinstance(event, Resumed):
                self.resumes += 1
                self._report(self._lines.close())  # the old connection's turn is over
                logger.info("gemini live resumed", extra={**self._log, "gap_ms": event.gap_ms})
            elif isinstance(event, SessionLost):
                self._report(self._lines.close())
                lost = core_link.Outcome("failed", "The connection to the voice model was lost.")
                self._ending.end(lost, goodbye=False, reason="model session lost")
                return

    async def _ear_events(self, ear: DeepgramEar) -> None:
        assert self._link is not None
        async for event in ear.events():
            if isinstance(event, CalleeTranscript) and event.is_final and event.text:
                offset = round(event.start_s * 1000) + self._ear_feed.shift_ms
                line = core_link.Transcript("callee", event.text, True, offset, "supervisor_stt")
                self._link.send_transcript(line)
                self._last_words = time.monotonic()
                if not self._degraded:
                    self._apply(self._supervisor.on_callee_final(event.text, self._clock()))
            elif isinstance(event, EarLost):
                self._apply(self._supervisor.on_ear_lost(event.reason, self._clock()))

    async def _core_commands(self, link: core_link.CoreLink) -> None:
        async for command in link.commands():
            if isinstance(command, core_link.Answer) and self._tools is not None:
                self._tools.on_answer(command)
            elif isinstance(command, core_link.AnsweredBy):
                self.on_amd(command.answered_by)  # the AMD callback landed on another pod
            elif isinstance(command, core_link.HangUp):
                self._ending.end(None, goodbye=False, reason=f"core: {command.reason}")

    async def _tick(self) -> None:
        s = self._s
        while True:
            await asyncio.sleep(self.CLOCK_TICK_S)
            now = time.monotonic()
            if not self._playout.drained:
                self._last_voice = now
            self._report(self._lines.tick(now))
            self._send_agent(self._agent_times.ready(now))
            if (totals := self._usage.due(now)) is not None and self._link is not None:
                self._link.send_usage(totals)
            self._apply(self._supervisor.on_silence(now - self._last_words, now - self._t0))
            if self._ending.started:
                continue
            if self._wrap_up is not None:
                waited = now - self._wrap_up_at
                quiet = self._model_quiet.is_set()
                if waited >= s.goodbye_timeout_sec and (
                    quiet or waited >= 3 * s.goodbye_timeout_sec
                ):
                    self._ending.end(self._wrap_up, goodbye=True, reason="wrap-up timed out")
            elif now - self._t0 >= s.max_call_duration_sec:
                self._start_wrap_up(
                    agent_prompt.wrap_up_cue("max_duration"),
                    core_link.Outcome(
                        "needs_follow_up", "The call reached its time limit.", ending="time_limit"
                    ),
                )
            elif not self._supervisor.holding and now - self._last_voice >= s.silence_timeout_sec:
                self._start_wrap_up(
                    agent_prompt.wrap_up_cue("silence"),
                    core_link.Outcome("failed", "Nobody spoke on the line.", ending="silence"),
                )

    # ---- supervisor ------------------------------------------------------------------------

    def _apply(self, decisions: list[Decision]) -> None:
        for d in decisions:
            logger.info(
                "supervisor decision",
                extra={**self._log, "kind": d.kind.value, "action": d.action.value},
            )
            if self._link is not None:
                self._link.send_decision(
                    core_link.DecisionReport(d.kind.value, d.reason, d.action.value)
                )
            self._act(d)

    def _act(self, d: Decision) -> None:
        if d.action is Action.LEAVE_MESSAGE:
            self._spawn(self._barge_in())
            cue = agent_prompt.voicemail_cue(self._s.voicemail_message)
            self._start_wrap_up(cue, ending.VOICEMAIL_MESSAGE_LEFT)
        elif d.action is Action.HANG_UP:
            self._ending.end(ending.MACHINE_NO_MESSAGE, goodbye=False, reason="voicemail")
        elif d.action is Action.IDENTIFY:
            self._spawn(self._say(agent_prompt.screening_cue()))
        elif d.action is Action.ALLOW_DTMF:
            if self._tools is not None:
                self._tools.dtmf_allowed = True
            self._spawn(self._say(agent_prompt.ivr_cue(), turn_complete=False))
        elif d.action is Action.WAIT:
            self._spawn(self._say(agent_prompt.hold_cue(), turn_complete=False))
        elif d.action is Action.GIVE_UP:
            self._ending.end(ending.GAVE_UP_ON_HOLD, goodbye=False, reason="hold too long")
        elif d.action is Action.END_NEEDS_FOLLOW_UP:
            self._ending.end(ending.AGENT_REPEATING, goodbye=True, reason="agent repeating")
        elif d.action is Action.DEGRADE:
            self._degraded = True

    # ---- ending ----------------------------------------------------------------------------

    def _agent_ended(self, outcome: core_link.Outcome) -> None:
        """The agent's end_call; in a wrap-up it carries the wrap-up's ending (voicemail, …)."""
        if self._wrap_up is not None and not outcome.ending:
            outcome = dataclasses.replace(outcome, ending=self._wrap_up.ending)
        self._ending.end(outcome, goodbye=True, reason="end_call")

    def _start_wrap_up(self, cue: str, fallback: core_link.Outcome) -> None:
        """Ask the model to close the call; `fallback` is the outcome if it does not."""
        if self._wrap_up is not None or self._ending.started:
            return
        self._wrap_up, self._wrap_up_at = fallback, time.monotonic()
        self._spawn(self._say(cue))

    def shut_down(self, outcome: core_link.Outcome, *, goodbye: bool) -> None:
        """The media process is stopping: ask the model for a goodbye first, or end now."""
        if goodbye:
            self._start_wrap_up(agent_prompt.wrap_up_cue("shutdown"), outcome)
        else:
            self._ending.end(outcome, goodbye=False, reason="media shutting down")

    def _dtmf_sent(self, sent: bool) -> None:
        self._expect_stream = sent

    async def _await_stream(self) -> None:
        await asyncio.sleep(self._s.reattach_timeout_sec)
        if self._leg is None:
            self._ending.end(ending.STREAM_NOT_RESUMED, goodbye=False, reason="stream not resumed")

    async def _barge_in(self) -> None:
        await self._playout.barge_in()

    async def _say(self, text: str, *, turn_complete: bool = True) -> None:
        if self._live is not None:
            with contextlib.suppress(GeminiLiveError):
                await self._live.send_text(text, turn_complete=turn_complete)

    def _report(self, lines: list[Line]) -> None:
        for line in lines:
            if line.who == "agent":
                self._report_agent(line)
            else:
                self._report_callee(line)

    def _report_agent(self, line: Line) -> None:
        """Report the agent's line from when the callee began to hear it (`AgentTimes`)."""
        self._send_agent(self._agent_times.add(line, time.monotonic()))
        self._apply(self._supervisor.on_agent_utterance(line.text, self._clock()))

    def _send_agent(self, timed: list[tuple[str, int]]) -> None:
        for text, at in timed:
            if self._link is not None:
                self._link.send_transcript(core_link.Transcript("agent", text, True, at, "gemini"))

    def _report_callee(self, line: Line) -> None:
        """Gemini's line of the callee: reported (and read by the supervisor) only once the
        ear is lost; while the ear works, its own line of the same words is the record."""
        if self._link is None:
            return
        self._last_words = time.monotonic()
        if self._degraded:
            transcript = core_link.Transcript("callee", line.text, True, line.at_ms, "gemini")
            self._link.send_transcript(transcript)
            self._apply(self._supervisor.on_callee_final(line.text, self._clock()))
