"""The agent's tool calls, carried out: ask_user, end_call, send_dtmf and report_signal.

The model calls a tool mid-conversation and, for all but send_dtmf, keeps talking (their
declared behavior is NON_BLOCKING, see `agent_prompt.TOOL_BEHAVIOR`), so every tool runs as its
own task and answers with a tool response when it is done, scheduled by
`agent_prompt.tool_scheduling`. ask_user goes to core through the `CoreLink` with a request id
chosen here and waits for the matching answer or a timeout ("no answer"); a voice answer is then
injected as a turn the model speaks, a context answer as silent guidance (no turn end, so the
model does not respond to it). end_call reports the outcome and hands the hang-up to the bridge,
which lets the goodbye play first. send_dtmf is allowed only once a phone menu was detected (by
the supervisor or reported by the model itself), because pressing keys re-opens the media
stream. A call the server withdraws on a barge-in gets no response; a withdrawn ask_user's
answer, if the customer gives one, still reaches the model as a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from media.call import core_link
from media.providers import agent_prompt
from media.providers.gemini_live import GeminiLiveError, GeminiLiveSession, ToolCall
from telephony import port as telephony

logger = logging.getLogger(__name__)

IVR_SIGNALS = frozenset({"ivr", "ivr_menu", "phone_menu"})
# Core times the question out itself and answers timed_out; wait a little longer than it.
_ANSWER_GRACE_S = 5.0


def outcome_from_args(args: Mapping[str, Any]) -> core_link.Outcome:
    """end_call's arguments as an `Outcome`; an unknown outcome becomes needs_follow_up."""
    outcome = str(args.get("outcome") or "")
    if outcome not in agent_prompt.OUTCOMES:
        outcome = "needs_follow_up"
    guests: int | None = None
    language = str(args.get("language") or "").strip().lower()
    with contextlib.suppress(TypeError, ValueError):
        guests = int(args["guests"]) if args.get("guests") is not None else None
    return core_link.Outcome(
        outcome=outcome,
        summary=str(args.get("summary") or ""),
        date_time=str(args.get("date_time") or ""),
        guests=guests,
        holder_name=str(args.get("holder_name") or ""),
        refusal_reason=str(args.get("refusal_reason") or ""),
        venue_name=str(args.get("venue_name") or "").strip()[:200],
        language=language if language in agent_prompt.SPOKEN_LANGUAGES else "",
        contact_phone=str(args.get("contact_phone") or "").strip()[:32],
    )


MAX_OPTIONS = 10


def options_from_args(args: Mapping[str, Any]) -> tuple[str, ...]:
    """ask_user's `options` as non-empty strings (the model may send junk or nothing)."""
    raw = args.get("options")
    if not isinstance(raw, list | tuple):
        return ()
    options = (str(o).strip() for o in raw if isinstance(o, str | int | float))
    return tuple(o for o in options if o)[:MAX_OPTIONS]


Spawn = Callable[[Coroutine[Any, Any, None]], object]


class ToolRelay:
    """Runs the model's tool calls for one call; `spawn` starts a task in the call's group."""

    def __init__(
        self,
        live: GeminiLiveSession,
        link: core_link.CoreLink,
        phone: telephony.Telephony,
        spawn: Spawn,
        *,
        call_id: str,
        call_sid: str,
        ask_timeout_s: int,
        on_end_call: Callable[[core_link.Outcome], None],
        on_dtmf: Callable[[bool], None],
    ) -> None:
        self._live = live
        self._link = link
        self._phone = phone
        self._spawn = spawn
        self._call_id = call_id
        self._call_sid = call_sid
        self._ask_timeout_s = ask_timeout_s
        self._on_end_call = on_end_call
        self._on_dtmf = on_dtmf
        self._pending: dict[str, asyncio.Future[core_link.Answer]] = {}
        self._cancelled: set[str] = set()
        self._log_extra = {"call_id": call_id}
        self.dtmf_allowed = False

    def handle(self, call: ToolCall) -> None:
        logger.info("tool call", extra={**self._log_extra, "tool": call.name})
        if call.name == "ask_user":
            self._spawn(self._ask_user(call))
        elif call.name == "end_call":
            self._spawn(self._end_call(call))
        elif call.name == "send_dtmf":
            self._spawn(self._send_dtmf(call))
        elif call.name == "report_signal":
            self._spawn(self._report_signal(call))
        else:
            self._spawn(self._refuse(call, f"unknown tool {call.name}"))

    def cancel(self, ids: tuple[str, ...]) -> None:
        """The server withdrew these calls (`toolCallCancellation`, sent when the callee
        barges in on the turn that made them): no tool response goes to their ids. What a
        withdrawn call already did stays done (a question stays with the customer)."""
        self._cancelled.update(ids)

    def on_answer(self, answer: core_link.Answer) -> None:
        future = self._pending.get(answer.request_id)
        if future is not None and not future.done():
            future.set_result(answer)

    async def _ask_user(self, call: ToolCall) -> None:
        question = str(call.args.get("question") or "").strip()
        if not question:
            await self._respond(call, {"error": "ask_user needs a question"})
            return
        request_id = uuid.uuid4().hex
        future: asyncio.Future[core_link.Answer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._link.ask_user(
            core_link.AskUser(
                request_id, question, self._ask_timeout_s, options_from_args(call.args)
            )
        )
        try:
            async with asyncio.timeout(
                self._ask_timeout_s + min(_ANSWER_GRACE_S, self._ask_timeout_s)
            ):
                answer = await future
        except TimeoutError:
            answer = core_link.Answer(request_id, "", timed_out=True)
        finally:
            self._pending.pop(request_id, None)
        if answer.timed_out or not answer.answer:
            await self._respond(call, {"result": "no answer", "timed_out": True})
            return
        delivered = await self._respond(
            call, {"result": "answered; the answer follows as a message", "mode": answer.mode}
        )
        # A call the model withdrew (barge-in) gets no response, but the customer did
        # answer: the answer still reaches the model, as the message it would have followed.
        if delivered or call.id in self._cancelled:
            text = agent_prompt.customer_answer_text(answer.answer, answer.mode)
            await self._send_text(text, turn_complete=answer.mode == "voice")

    async def _end_call(self, call: ToolCall) -> None:
        outcome = outcome_from_args(call.args)
        self._on_end_call(outcome)
        await self._respond(call, {"result": "ok; the call ends after your goodbye"})

    async def _send_dtmf(self, call: ToolCall) -> None:
        digits = str(call.args.get("digits") or "")
        if not self.dtmf_allowed:
            await self._respond(
                call, {"error": "no automated phone menu detected; send_dtmf is only for menus"}
            )
            return
        self._on_dtmf(True)
        try:
            await self._phone.send_dtmf(self._call_sid, self._call_id, digits)
        except telephony.TelephonyError as exc:
            self._on_dtmf(False)
            logger.warning("dtmf not sent: %s", exc.message, extra=self._log_extra)
            await self._respond(call, {"error": "the keys could not be pressed"})
            return
        await self._respond(call, {"result": f"pressed {digits}"})

    async def _report_signal(self, call: ToolCall) -> None:
        name = str(call.args.get("name") or "").strip().lower()
        if name:
            self._link.send_signal(name)
            if name in IVR_SIGNALS:
                self.dtmf_allowed = True
        await self._respond(call, {"result": "noted"})

    async def _refuse(self, call: ToolCall, error: str) -> None:
        await self._respond(call, {"error": error})

    async def _respond(self, call: ToolCall, response: dict[str, Any]) -> bool:
        if call.id in self._cancelled:
            return False
        try:
            await self._live.send_tool_response(
                call.id,
                call.name,
                response,
                scheduling=agent_prompt.tool_scheduling(call.name, response),
            )
        except GeminiLiveError:
            return False  # the session is over; the bridge is ending the call
        return True

    async def _send_text(self, text: str, *, turn_complete: bool) -> None:
        with contextlib.suppress(GeminiLiveError):
            await self._live.send_text(text, turn_complete=turn_complete)
