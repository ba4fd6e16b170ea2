"""The Gemini Live stand-in's mind: a small, readable dialogue policy that follows the brief.

The real model reads the system instruction that `build_system_instruction`
writes and improvises; the stand-in reads the same text (`read_instructions`, tolerant of a
changed layout) and follows a script: greet with the AI disclosure and state the request,
answer the venue's questions, call `ask_user` when the venue offers something other than the
brief and act on the customer's answer, confirm the agreed details, and finish with
`end_call` carrying the structured outcome. It also presses keys for an IVR menu
(`send_dtmf`), reports voicemail and menus (`report_signal`), switches language when the
other side does not follow, and repeats itself after being talked over.

`AgentPolicy` is pure: it turns what the venue said (a `sim.world.Line`: act + details) or
what the customer answered into `Move`s. `sim.agent_session` runs it on a live connection.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Any

from sim import dialogue
from sim.dialogue import Request
from sim.world import Line

DISCLOSURES = {
    "en": "Hello, this is an AI assistant calling on behalf of a customer.",
    "ru": "Здравствуйте, это ИИ-ассистент, звоню по поручению клиента.",
}
_KINDS = (
    ("cancel", "restaurant_cancel"),
    ("doctor", "doctor_appointment"),
    ("hotel", "hotel_booking"),
    ("restaurant", "restaurant_booking"),
    ("table", "restaurant_booking"),
)
_YES = r"\b(?:yes|yeah|yep|sure|ok|okay|fine|accept\w*|agreed?|go ahead|book it|please do)\b"
_YES_RU = r"(?<!\w)(?:да|давай\w*|хорошо|ок|соглас\w*|подходит|бронируй\w*|берём|берем)(?!\w)"
_NO = r"\b(?:no|nope|don'?t|do not|decline\w*|not|never|cancel)\b"
_NO_RU = r"(?<!\w)(?:нет|не|отказ\w*)(?!\w)"


@dataclasses.dataclass(frozen=True, slots=True)
class Instructions:
    """What the system instruction asks for, as far as the stand-in understands it."""

    disclosure: str
    kind: str
    brief: str
    slots: dict[str, str]
    language: str  # "en" | "ru" | "auto"
    voicemail: str  # "wait" (for a supervisor message) | "no_message" | "leave"


def _section(text: str, title: str) -> str:
    match = re.search(rf"{title}[^\n:]*:\s*\n?(.*?)(?=\n\n[A-Z][A-Z ]+[:(]|\Z)", text, re.S)
    return match.group(1).strip() if match else ""


def read_instructions(text: str) -> Instructions:
    """Parse a system instruction; anything missing falls back to a sensible default."""
    quoted = re.search(r'disclosure:\s*"(.+?)"', text, re.S)
    goal = _section(text, "GOAL").lower()
    kind = next((k for word, k in _KINDS if word in goal), "restaurant_booking")
    brief = _section(text, "TASK") or text
    slots = dict(re.findall(r"^- ([\w ]+): (.+)$", _section(text, "DETAILS"), re.M))
    rule = _section(text, "LANGUAGE")
    language = "ru" if "Speak Russian" in rule else "en" if "Speak English" in rule else "auto"
    if quoted is not None:
        disclosure = quoted.group(1).strip()
    else:
        disclosure = DISCLOSURES[language if language != "auto" else dialogue.language_of(brief)]
    voicemail = "leave"
    if re.search(r"supervisor message tells you whether to leave", text, re.I):
        voicemail = "wait"
    elif re.search(r"leave no message|do not leave a message", text, re.I):
        voicemail = "no_message"
    return Instructions(disclosure, kind, brief, slots, language, voicemail)


@dataclasses.dataclass(frozen=True, slots=True)
class Speak:
    """Say `text`; `act` and `data` are what the venue will understand."""

    act: str
    text: str
    data: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Tool:
    """A fire-and-forget tool call (`report_signal`, `send_dtmf`)."""

    name: str
    args: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Ask:
    """`ask_user`: the answer comes back later (`AgentPolicy.on_answer`); `options` are
    the choices on offer, when the customer should pick one."""

    question: str
    options: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """`end_call` with these arguments; the policy says nothing more afterwards."""

    args: dict[str, Any]


Move = Speak | Tool | Ask | Finish


def customer_reply(text: str) -> str | None:
    """The customer's words from an `ask_user` answer turn, or None for any other text turn."""
    match = re.match(r"\s*\[CUSTOMER (?:ANSWER|GUIDANCE)[^\]]*\]\s*(.*)", text, re.S)
    return match.group(1).strip() if match else None


def supervisor_cue(text: str) -> str | None:
    """The body of a `[SUPERVISOR]` turn the bridge injected, or None for any other text."""
    match = re.match(r"\s*\[SUPERVISOR\]\s*(.*)", text, re.S)
    return match.group(1).strip() if match else None


def is_yes(text: str) -> bool | None:
    """True / False for a clear yes / no (English or Russian), None otherwise."""
    lowered = text.lower()
    if re.search(_NO, lowered) or re.search(_NO_RU, lowered):
        return False
    if re.search(_YES, lowered) or re.search(_YES_RU, lowered):
        return True
    return None


class AgentPolicy:
    """One call's agent: what it wants, what it heard, what it is waiting for."""

    def __init__(
        self, instructions: Instructions, today: datetime.date, *, overclaim: bool = False
    ) -> None:
        self.ins = instructions
        self.today = today
        # A test-only flaw: report `booked` whatever the venue said (post-call analysis tests).
        self.overclaim = overclaim
        self.request = dialogue.parse_request(
            instructions.brief, instructions.slots, today=today, kind=instructions.kind
        )
        self.asked = self.request
        lang = instructions.language
        self.lang = lang if lang in ("en", "ru") else dialogue.language_of(instructions.brief)
        self.offer: Request | None = None
        # "offer" | "name": waiting for the customer; "supervisor": for a voicemail instruction
        self.pending: str | None = None
        self.ended = False
        self.introduced = False
        self.greet_cued = False  # the bridge said the callee picked up: greet first
        self.voicemail_message: str | None = None
        self.at_voicemail = False
        self.last_said: Speak | None = None
        self.heard_up_to = 0  # id of the last venue line already answered
        self.venue_name = str(instructions.slots.get("venue_name") or "")  # or as they say it

    def _t(self, en: str, ru: str) -> str:
        return ru if self.lang == "ru" else en

    def _what(self, request: Request | None = None) -> str:
        return dialogue.describe(request or self.request, self.today, self.lang)

    def _under(self) -> str:
        name = self.request.name
        if not name:
            return ""
        return self._t(f", under the name {name}", f", на имя {name}")

    # ---- moves -------------------------------------------------------------------------

    def introduce(self) -> list[Move]:
        """Disclosure first, then the request."""
        self.introduced = True
        disclosure = self.ins.disclosure
        if dialogue.language_of(disclosure) != self.lang:
            disclosure = DISCLOSURES[self.lang]
        verb = self._t("I'd like to book", "Я хотел бы забронировать")
        if self.request.kind == "restaurant_cancel":
            verb = self._t("I'd like to cancel a booking:", "Я хотел бы отменить бронь:")
        text = f"{disclosure} {verb} {self._what()}{self._under()}."
        return [self._speak("request", text, self.request.as_data())]

    def _speak(self, act: str, text: str, data: dict[str, str] | None = None) -> Speak:
        said = Speak(act, text, dict(data or {}))
        self.last_said = said
        return said

    def _finish(self, outcome: str, summary: str, **extra: Any) -> Finish:
        self.ended = True
        self.pending = None
        if self.overclaim and outcome != "booked":
            outcome, summary = (
                "booked",
                f"Booked {dialogue.describe(self.request, self.today, 'en')}.",
            )
            extra = self._booked_args(self.request)
        args: dict[str, Any] = {"outcome": outcome, "summary": summary, "language": self.lang}
        if self.venue_name:
            args["venue_name"] = self.venue_name
        args.update({k: v for k, v in extra.items() if v not in (None, "")})
        return Finish(args)

    def _booked_args(self, booked: Request) -> dict[str, Any]:
        return {
            "date_time": booked.date_time,
            "guests": booked.guests,
            "holder_name": booked.name,
        }

    # ---- what the venue said -----------------------------------------------------------

    def respond(self, line: Line) -> list[Move]:
        """Answer the venue's latest line."""
        if self.ended:
            return []
        act, data = line.act, line.data
        if data.get("venue") and not self.venue_name:
            self.venue_name = data["venue"]
        if act == "greeting":
            if self.ins.language == "auto":
                self.lang = line.language
            return self.introduce()
        if act == "ivr_menu":
            digit = data.get("reservations_digit", "1")
            return [
                Tool("report_signal", {"name": "ivr_menu"}),
                Tool("send_dtmf", {"digits": digit}),
            ]
        if act == "voicemail_greeting":
            return self._voicemail()
        if act == "not_understood":
            self.lang = data.get("language", self.lang)
            return self.introduce()
        if act == "barge_in":
            text = self._t("Sorry — ", "Простите — ") + f"{self._what()}{self._under()}."
            return [self._speak("repeat", text, self.request.as_data())]
        if act == "ask_name":
            if self.request.name:
                text = self._t(f"The name is {self.request.name}.", f"На имя {self.request.name}.")
                return [self._speak("give_name", text, {"name": self.request.name})]
            self.pending = "name"
            question = "The venue asks what name the booking should be under. Which name?"
            return [Ask(question), self._hold()]
        if act == "offer":
            return self._consider(Request.from_data(data))
        if act == "confirm":
            return self._confirmed(Request.from_data(data))
        if act == "refuse":
            reason = data.get("reason", "")
            bye = self._t(
                "I understand. Thank you for your time, goodbye.",
                "Понимаю. Спасибо, до свидания.",
            )
            summary = f"The venue refused: {reason}."
            return [
                self._speak("refused_bye", bye),
                self._finish("refused", summary, refusal_reason=reason),
            ]
        if act == "still_there":
            if self.pending is not None:
                text = self._t(
                    "Yes, I'm still here, just waiting for my customer's answer.",
                    "Да, я здесь, жду ответа клиента.",
                )
                return [self._speak("still_checking", text)]
            return [self.last_said] if self.last_said else self.introduce()
        if act == "pardon" and self.last_said is not None:
            return [self.last_said]
        if act == "hang_up_notice":
            summary = "The venue hung up mid-call before anything was agreed."
            return [self._finish("needs_follow_up", summary)]
        if act == "goodbye":
            summary = "The venue ended the call before a booking was made."
            return [self._finish("needs_follow_up", summary)]
        return []

    def _hold(self) -> Speak:
        text = self._t(
            "Let me check that with my customer, one moment please.",
            "Одну минуту, уточню у клиента.",
        )
        return self._speak("hold", text)

    def _voicemail(self) -> list[Move]:
        self.at_voicemail = True
        moves: list[Move] = [Tool("report_signal", {"name": "voicemail"})]
        if self.voicemail_message is not None:
            return [*moves, *self._leave_message(self.voicemail_message)]
        if self.ins.voicemail == "wait":
            self.pending = "supervisor"
            return moves
        if self.ins.voicemail == "no_message":
            return [*moves, self._finish("failed", "Reached voicemail; no message was left.")]
        text = (
            f"{DISCLOSURES[self.lang]} "
            + self._t("I'm calling to book", "Звоню, чтобы забронировать")
            + f" {self._what()}{self._under()}. "
            + self._t("We will call back later. Thank you.", "Мы перезвоним позже. Спасибо.")
        )
        return [*moves, *self._leave_message(text)]

    def _leave_message(self, text: str) -> list[Move]:
        self.pending = None
        summary = "Reached voicemail; left a message and the booking still needs to be made."
        return [self._speak("voicemail_message", text), self._finish("needs_follow_up", summary)]

    # ---- what the bridge's supervisor said ---------------------------------------------

    def on_supervisor(self, cue: str) -> list[Move]:
        """A `[SUPERVISOR]` instruction (the agent prompt's cues), followed as the prompt says."""
        if self.ended:
            return []
        lowered = cue.lower()
        if "answered the phone" in lowered or "greet them" in lowered:
            self.greet_cued = True
            return []
        if "answering machine" in lowered:
            quoted = re.search(r'"(.+)"\s*$', cue, re.S)
            self.voicemail_message = quoted.group(1) if quoted else DISCLOSURES[self.lang]
            if self.at_voicemail:
                return self._leave_message(self.voicemail_message)
            return []  # after the beep, once the greeting has been heard
        if "screening" in lowered or "who is calling" in lowered:
            text = f"{DISCLOSURES[self.lang]} " + self._t(
                f"I'm calling to book {self._what()}.",
                f"Звоню, чтобы забронировать {self._what()}.",
            )
            return [self._speak("identify", text)]
        if "goodbye now" in lowered:
            bye = self._t(
                "I'm sorry, I have to go now. Goodbye.", "Извините, мне пора. До свидания."
            )
            summary = "The call was wrapped up before the task was resolved."
            return [self._speak("bye", bye), self._finish("needs_follow_up", summary)]
        return []  # hold, menus: the conversation itself tells what to do

    def _consider(self, offer: Request) -> list[Move]:
        self.offer = offer
        if offer.time == self.request.time and offer.date in (None, self.request.date):
            return self._accept()
        self.pending = "offer"
        asked, other = dialogue.say_time(self.request.time), dialogue.say_time(offer.time)
        question = (
            f"The venue cannot do {asked} {dialogue.say_date(self.request.date, self.today, 'en')}"
            f" but offers {other}. Shall I book {other}?"
        )
        return [Ask(question, (f"Yes, book {other}", "No")), self._hold()]

    def _accept(self) -> list[Move]:
        assert self.offer is not None
        self.request = dataclasses.replace(
            self.request, time=self.offer.time, date=self.offer.date or self.request.date
        )
        when = dialogue.say_time(self.request.time)
        text = self._t(
            f"My customer says yes, {when} works. Please book it{self._under()}.",
            f"Клиент согласен, {when} подходит. Бронируйте, пожалуйста{self._under()}.",
        )
        return [self._speak("accept_offer", text, self.request.as_data())]

    def _confirmed(self, booked: Request) -> list[Move]:
        booked = dataclasses.replace(booked, name=booked.name or self.request.name)
        text = self._t(
            f"Great, so that's {self._what(booked)}{self._under()}. Thank you, goodbye!",
            f"Отлично, {self._what(booked)}{self._under()}. Спасибо, до свидания!",
        )
        changed = booked.time != self.asked.time or booked.date != self.asked.date
        verb = "Cancelled" if booked.kind == "restaurant_cancel" else "Booked"
        summary = f"{verb} {dialogue.describe(booked, self.today, 'en')}"
        summary += f" under {booked.name}." if booked.name else "."
        if changed:
            asked = dialogue.say_time(self.asked.time)
            summary += f" The venue could not do {asked}; the customer accepted the alternative."
        return [
            self._speak("confirm_and_bye", text),
            self._finish("booked", summary, **self._booked_args(booked)),
        ]

    # ---- what the customer answered ----------------------------------------------------

    def on_answer(self, answer: str) -> list[Move]:
        """The customer's answer to the pending `ask_user`."""
        pending, self.pending = self.pending, None
        if self.ended or pending is None:
            return []
        if pending == "name":
            name = next(iter(re.findall(r"[A-ZА-ЯЁ][\w'\-]+", answer)), answer.strip())
            self.request = dataclasses.replace(self.request, name=name)
            text = self._t(f"The name is {name}.", f"На имя {name}.")
            return [self._speak("give_name", text, {"name": name})]
        assert self.offer is not None
        verdict = is_yes(answer)
        if verdict:
            return self._accept()
        other = dialogue.say_time(self.offer.time)
        if verdict is False:
            text = self._t(
                f"Unfortunately my customer can't make {other}. Thank you anyway, goodbye.",
                f"К сожалению, {other} клиенту не подходит. Спасибо, до свидания.",
            )
            summary = (
                f"The venue offered {other} instead of {dialogue.say_time(self.asked.time)};"
                " the customer declined."
            )
            return [
                self._speak("decline_offer", text),
                self._finish("alternative_offered", summary),
            ]
        if (counter := dialogue.parse_time(answer)) is not None:
            self.request = dataclasses.replace(self.request, time=counter)
            text = self._t(
                f"My customer asks whether {dialogue.say_time(counter)} would be possible instead.",
                f"Клиент спрашивает, можно ли на {dialogue.say_time(counter)}?",
            )
            return [self._speak("request", text, self.request.as_data())]
        summary = f"The venue offered {other}; the customer's answer needs a follow-up: {answer}"
        bye = self._t(
            "Thank you, I'll pass that on to my customer. Goodbye.",
            "Спасибо, я передам клиенту. До свидания.",
        )
        return [self._speak("bye", bye), self._finish("needs_follow_up", summary)]

    def on_customer_timeout(self) -> list[Move]:
        """The customer (or, at a voicemail, the supervisor) did not answer in time."""
        if self.ended or self.pending is None:
            return []
        if self.pending == "supervisor":
            return [self._finish("failed", "Reached voicemail; no message was left.")]
        text = self._t(
            "I'm sorry, I couldn't reach my customer. We'll call back. Goodbye.",
            "Извините, не удалось связаться с клиентом. Мы перезвоним. До свидания.",
        )
        summary = "The customer did not answer in time; the venue's question is still open."
        return [self._speak("no_answer_bye", text), self._finish("needs_follow_up", summary)]
