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


def agent_tools() -> list[types.FunctionDeclaration]:
    """The four tools the voice agent may call; core decides what each one does."""
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


def speech_language_code(language: str) -> str | None:
    """Gemini's speech `language_code` for our 'ru' | 'en' | 'auto' (None lets it detect)."""
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


def wrap_up_cue(reason: Literal["silence", "max_duration"]) -> str:
    """Ask the model to close the call now (the bridge hangs up after a bound anyway)."""
    why = (
        "The line has been silent for a long time."
        if reason == "silence"
        else "The call has reached its time limit."
    )
    return (
        f"{SUPERVISOR_PREFIX} {why} Say a short, polite goodbye now and call end_call with "
        "the outcome so far."
    )
