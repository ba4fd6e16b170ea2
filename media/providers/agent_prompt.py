"""What the voice agent is told: its system instruction, its tools and the mid-call cues.

Every word the model reads comes from here, so the prompt, the tool declarations and the text
turns the bridge injects (the greeting cue, customer answers, supervisor instructions) stay
consistent with each other: the system instruction explains the prefixes that the injected
turns carry. No I/O; `media.providers.gemini_live` sends these, `media.call.bridge` chooses when.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from google.genai import types

OUTCOMES = ("booked", "refused", "alternative_offered", "needs_follow_up", "failed")
SPOKEN_LANGUAGES = ("en", "ru")
ANSWER_PREFIX = "[CUSTOMER ANSWER - say this to the other person]"
GUIDANCE_PREFIX = "[CUSTOMER GUIDANCE - act on it, do not read it aloud]"
SUPERVISOR_PREFIX = "[SUPERVISOR]"
DEFAULT_DISCLOSURES = {
    "en": "Hello, this is an AI assistant calling on behalf of a customer.",
    "ru": "Здравствуйте, это ИИ-ассистент, звоню по поручению клиента.",
}


def _string(description: str, enum: list[str] | None = None) -> types.Schema:
    return types.Schema(type=types.Type.STRING, description=description, enum=enum)


# The model must keep the line alive while a tool runs: ask_user can wait a minute for the
# customer, and a BLOCKING call would leave the callee listening to silence. So ask_user,
# end_call and report_signal are NON_BLOCKING, and each answer says through its scheduling
# (`TOOL_SCHEDULING`) whether the model should react. send_dtmf alone is BLOCKING: pressing keys
# replaces the media stream, so anything the model said meanwhile would be cut off, and it
# needs the result (keys pressed or refused) before it goes on.
TOOL_BEHAVIOR = {
    "ask_user": types.Behavior.NON_BLOCKING,
    "end_call": types.Behavior.NON_BLOCKING,
    "send_dtmf": types.Behavior.BLOCKING,
    "report_signal": types.Behavior.NON_BLOCKING,
}


def tool_scheduling(
    name: str, response: Mapping[str, Any]
) -> types.FunctionResponseScheduling | None:
    """How the model takes a tool's answer: SILENT for acknowledgements (an ask_user answer
    follows as its own turn; end_call and report_signal need no words), WHEN_IDLE for what it
    must act on (no answer from the customer, an error); None for a BLOCKING tool, where
    scheduling does not apply."""
    if TOOL_BEHAVIOR.get(name) is types.Behavior.BLOCKING:
        return None
    if "error" in response or response.get("timed_out"):
        return types.FunctionResponseScheduling.WHEN_IDLE
    return types.FunctionResponseScheduling.SILENT


def agent_tools() -> list[types.FunctionDeclaration]:
    """The four tools the voice agent may call, each with its `TOOL_BEHAVIOR`."""
    tools = _declarations()
    for tool in tools:
        tool.behavior = TOOL_BEHAVIOR[tool.name or ""]
    return tools


def _declarations() -> list[types.FunctionDeclaration]:
    return [
        types.FunctionDeclaration(
            name="ask_user",
            description=(
                "Ask the customer who ordered this call a question only they can answer "
                "(accept an alternative time, a deposit, a missing detail). Their answer "
                "arrives later as a message; keep the other person on the line meanwhile."
            ),
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={
                    "question": _string("One short, self-contained question."),
                    "options": types.Schema(
                        type=types.Type.ARRAY,
                        items=types.Schema(type=types.Type.STRING),
                        description=(
                            "The choices on offer, each a few words (e.g. the times the venue "
                            "proposed), when the customer should pick one; omit otherwise."
                        ),
                    ),
                },
                required=["question"],
            ),
        ),
        types.FunctionDeclaration(
            name="end_call",
            description=(
                "Finish the call with its outcome, after saying goodbye. Call it exactly once."
            ),
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={
                    "outcome": _string("How the task ended.", list(OUTCOMES)),
                    "date_time": _string(
                        "Agreed local date and time, ISO 8601 (YYYY-MM-DDTHH:MM)."
                    ),
                    "guests": types.Schema(
                        type=types.Type.INTEGER, description="Number of people booked."
                    ),
                    "holder_name": _string("Name the booking is under."),
                    "venue_name": _string("The venue's name, as they said it on the call."),
                    "language": _string(
                        "Language the conversation was held in.", list(SPOKEN_LANGUAGES)
                    ),
                    "contact_phone": _string(
                        "A phone number the venue gave for this booking, E.164, if any."
                    ),
                    "refusal_reason": _string("Why the venue refused, in their words."),
                    "summary": _string("Two or three sentences on what was agreed or why not."),
                },
                required=["outcome", "summary"],
            ),
        ),
        types.FunctionDeclaration(
            name="send_dtmf",
            description="Press phone keys, e.g. to choose an option in an automated menu.",
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={"digits": _string("Keys to press: 0-9, * and #.")},
                required=["digits"],
            ),
        ),
        types.FunctionDeclaration(
            name="report_signal",
            description=(
                "Report a notable fact about the call as it happens, e.g. voicemail, ivr_menu, "
                "on_hold, transferred, wrong_number, deposit_required, confirmation_promised."
            ),
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={"name": _string("The signal, in snake_case.")},
                required=["name"],
            ),
        ),
    ]


_KIND_GOALS = {
    "restaurant_booking": "book a table at a restaurant",
    "restaurant_cancel": "cancel an existing restaurant reservation",
    "doctor_appointment": "book a doctor's appointment",
    "hotel_booking": "book a hotel room",
    "concierge": "handle a concierge request",
}
_LANGUAGE_RULES = {
    "ru": "Speak Russian. Switch language only if the other person clearly cannot follow.",
    "en": "Speak English. Switch language only if the other person clearly cannot follow.",
    "auto": (
        "Speak the language of the task unless the other person answers in another one; "
        "then continue in theirs."
    ),
}
_SPEECH_LANGUAGE_CODES = {"ru": "ru-RU", "en": "en-US"}
# Live models that synthesise speech from text (half-cascade) take `speechConfig.languageCode`;
# native-audio models, our default among them, choose the language themselves and are steered
# by the system instruction's LANGUAGE rule instead (Live API docs, "language and voice").
_CASCADE_MODELS = ("gemini-2.0-flash-live", "gemini-live-2.5-flash")


def speech_language_code(language: str, model: str) -> str | None:
    """Gemini's speech `language_code` for our 'ru' | 'en' | 'auto', or None where the model
    takes none (native audio) or should detect it ('auto'); the system instruction always
    states the language as well."""
    name = model.removeprefix("models/")
    if "native-audio" in name or not name.startswith(_CASCADE_MODELS):
        return None
    return _SPEECH_LANGUAGE_CODES.get(language)


def customer_answer_text(answer: str, mode: Literal["voice", "context"]) -> str:
    """The text turn that delivers a customer's answer, marked the way the prompt explains."""
    return f"{ANSWER_PREFIX if mode == 'voice' else GUIDANCE_PREFIX} {answer}"


def build_system_instruction(
    brief: str,
    language: str,
    kind: str,
    parsed_slots: Mapping[str, Any] | None,
    disclosure: str,
) -> str:
    """The agent's system instruction; its first sentence makes the AI disclosure mandatory."""
    goal = _KIND_GOALS.get(kind, "complete the customer's task")
    slots = "\n".join(
        f"- {key}: {value}"
        for key, value in sorted((parsed_slots or {}).items())
        if value not in (None, "", [], {})
    )
    sections = [
        f'Your very first sentence on this call must be this honest disclosure: "{disclosure}" '
        "You are an AI voice assistant phoning on behalf of a customer; never claim or imply "
        "that you are human, and if asked, confirm that you are an AI.",
        f"GOAL: {goal}.",
        f"TASK (from the customer):\n{brief.strip()}",
    ]
    if slots:
        sections.append(f"DETAILS:\n{slots}")
    sections += [
        "HOW TO TALK: short, polite, natural sentences; one question at a time; let the other "
        "person finish. Confirm the key details (date, time, number of people, name) back "
        "before finishing. Never invent facts or agree to anything the task does not cover. "
        "Share the customer's personal details only as far as the task needs.",
        "TOOLS:\n"
        "- ask_user: when a decision or fact only the customer has is needed (an alternative "
        "time, a deposit, a price, a missing detail). When the other person offered choices, "
        "pass them as options. Tell the other person you are checking "
        "and keep the line open. The reply arrives as a message starting with "
        f"{ANSWER_PREFIX} (say it to the other person) or {GUIDANCE_PREFIX} (act on it "
        "silently).\n"
        "- end_call: once the task is resolved either way, after a short goodbye: outcome "
        "booked, refused, alternative_offered (they offered something the customer did not "
        "accept), needs_follow_up, or failed, with the agreed details, the venue's name, the "
        "language you spoke and a summary.\n"
        "- send_dtmf: to press keys in an automated phone menu.\n"
        "- report_signal: as soon as you notice voicemail, a phone menu, hold music, a "
        "transfer, a wrong number, a deposit requirement or a promised confirmation.",
        "VOICEMAIL AND MENUS: if an answering machine or voicemail picks up, report_signal "
        "voicemail and wait: a supervisor message tells you whether to leave a message. If an "
        "automated menu answers, report_signal ivr_menu, listen to all options, then choose "
        "the one that reaches reservations or a person with send_dtmf. On hold, wait quietly.",
        f"SUPERVISOR: messages starting with {SUPERVISOR_PREFIX} come from the system "
        "watching this call, not from the other person; follow them and never read them "
        "aloud.",
        f"LANGUAGE: {_LANGUAGE_RULES.get(language, _LANGUAGE_RULES['auto'])}",
    ]
    return "\n\n".join(sections)


# ---- text turns the bridge injects mid-call ----------------------------------------------


def greeting_cue() -> str:
    """The first text turn: the callee has picked up, so the model speaks first."""
    return (
        f"{SUPERVISOR_PREFIX} The other person has answered the phone. Greet them now, "
        "starting with the disclosure."
    )


def voicemail_cue(message: str) -> str:
    """Leave `message` on an answering machine, then finish."""
    return (
        f"{SUPERVISOR_PREFIX} This is an answering machine, not a person. After the beep, "
        "say exactly this message once, then call end_call with outcome needs_follow_up: "
        f'"{message}"'
    )


def screening_cue() -> str:
    return (
        f"{SUPERVISOR_PREFIX} A call-screening service is asking who is calling. Say that you "
        "are an AI assistant calling on behalf of a customer, and why, in one sentence."
    )


def ivr_cue() -> str:
    return (
        f"{SUPERVISOR_PREFIX} An automated phone menu answered. Listen to the options, then use "
        "send_dtmf to reach reservations or a person."
    )


def hold_cue() -> str:
    return f"{SUPERVISOR_PREFIX} You are on hold. Stay silent until a person speaks to you."


def wrap_up_cue(reason: Literal["silence", "max_duration", "shutdown"]) -> str:
    """Ask the model to close the call now (the bridge hangs up after a bound anyway)."""
    why = {
        "silence": "The line has been silent for a long time.",
        "max_duration": "The call has reached its time limit.",
        "shutdown": "This call must end now for technical reasons; the customer will follow up.",
    }[reason]
    return (
        f"{SUPERVISOR_PREFIX} {why} Say a short, polite goodbye now and call end_call with "
        "the outcome so far."
    )
