"""The scripted venues behind the fictional numbers +1 555 0100 … 0199, and how they talk.

Each `Venue` is pure data: a name, a language, opening hours, how the phone is answered
(a person, busy, no answer, voicemail, an IVR menu) and a temperament (books as asked, is
fully booked, offers another time, hangs up mid-call, talks over the caller). `VenueMind` is
the small dialogue policy of one call: given what the agent just said (its act and details,
see `sim.dialogue`) it returns what the venue says back, or that it hangs up. Timing, audio
and the phone line are the carrier's business (`sim.callee`, `sim.carrier`).

The venues themselves are data: one TOML file each, loaded and checked by
`sim.scenario_files` (docs/simulator.md), so a new persona needs no code.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum

from sim import dialogue
from sim.dialogue import Request
from sim.live_quirks import LiveQuirks

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Answering(enum.StrEnum):
    HUMAN = "human"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    IVR = "ivr"


class Booking(enum.StrEnum):
    AS_ASKED = "as_asked"
    FULLY_BOOKED = "fully_booked"
    OFFERS_OTHER_TIME = "offers_other_time"


class Manner(enum.StrEnum):
    POLITE = "polite"
    HANGS_UP = "hangs_up"  # hangs up as soon as it hears the request
    TALKS_OVER = "talks_over"  # starts talking while the agent is still speaking


@dataclasses.dataclass(frozen=True, slots=True)
class Venue:
    """One scripted persona; `story` is the one-line summary the README lists."""

    number: str
    name: str
    story: str
    language: str = "en"
    host: str = "Maria"
    opens: datetime.time = datetime.time(12, 0)
    closes: datetime.time = datetime.time(23, 0)
    answering: Answering = Answering.HUMAN
    booking: Booking = Booking.AS_ASKED
    manner: Manner = Manner.POLITE
    max_party: int = 12
    offer_shift_min: int = 90
    refusal_reason: str = "we are fully booked that day"
    ivr_digit: str = "1"
    closed_on: frozenset[int] = frozenset()  # weekdays, Monday = 0: bookings then are refused
    ivr_prompt: str | None = None  # None: the stock menu naming `ivr_digit`
    voicemail_greeting: str | None = None  # None: the stock "after the tone" greeting
    barge_in: str | None = None  # None: the stock line a talks_over venue starts with
    # How the Gemini stand-in misbehaves on calls to this venue (goAway, error closes, ...).
    gemini: LiveQuirks = dataclasses.field(default_factory=LiveQuirks)


@dataclasses.dataclass(frozen=True, slots=True)
class Say:
    """The venue says `text`; `act` and `data` are what the agent will understand."""

    act: str
    text: str
    data: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class HangUp:
    """The venue puts the phone down (after finishing what it was saying)."""


Reaction = Say | HangUp


class VenueMind:
    """One call's venue-side dialogue policy; every method returns what to say or do next."""

    def __init__(self, venue: Venue, today: datetime.date) -> None:
        self.venue = venue
        self.today = today
        self.lang = venue.language
        self.request = Request()
        self.offered: datetime.time | None = None
        self.booked: Request | None = None
        self.menu_passed = venue.answering is not Answering.IVR
        self.wrong_digit = False
        self.talked_over = False
        self.complained_language = False
        self.nudged = False

    def _t(self, en: str, ru: str) -> str:
        return ru if self.lang == "ru" else en

    # ---- events ------------------------------------------------------------------------

    def opening(self) -> list[Reaction]:
        """What the callee says as soon as the call connects."""
        v = self.venue
        if v.answering is Answering.VOICEMAIL:
            text = v.voicemail_greeting or (
                f"Hi, you've reached {v.name}. We can't take your call right now. "
                "Please leave a message after the tone."
            )
            return [Say("voicemail_greeting", text, {"venue": v.name})]
        if self.wrong_digit:
            return [Say("ivr_hours", f"We are open from {self._hours()}. Goodbye."), HangUp()]
        if not self.menu_passed:
            text = v.ivr_prompt or (
                f"Thank you for calling {v.name}. For reservations, press {v.ivr_digit}. "
                "For opening hours, press 2."
            )
            return [Say("ivr_menu", text, {"reservations_digit": v.ivr_digit, "venue": v.name})]
        return [self._greeting()]

    def _greeting(self) -> Say:
        v = self.venue
        text = self._t(
            f"Good evening, {v.name}, this is {v.host} speaking. How can I help you?",
            f"Добрый день, {v.name}, меня зовут {v.host}. Чем могу помочь?",
        )
        return Say("greeting", text, {"venue": v.name})

    def on_digits(self, digits: str) -> None:
        """Keys pressed on the line; an IVR routes on them and the next `opening()` says where."""
        if not self.menu_passed:
            self.menu_passed = self.venue.ivr_digit in digits
            self.wrong_digit = not self.menu_passed

    def on_agent_started(self, act: str) -> list[Reaction]:
        """The agent began speaking; an impatient venue talks over its first request."""
        if self.venue.manner is Manner.TALKS_OVER and act == "request" and not self.talked_over:
            self.talked_over = True
            text = self.venue.barge_in or (
                "Yes, yes, hello! It's very busy tonight, what would you like?"
            )
            return [Say("barge_in", text)]
        return []

    def on_silence(self) -> list[Reaction]:
        """The agent has said nothing for a while."""
        if self.venue.answering is Answering.VOICEMAIL:
            return [HangUp()]
        if not self.nudged:
            self.nudged = True
            return [Say("still_there", self._t("Hello? Are you still there?", "Алло? Вы тут?"))]
        bye = self._t("I'll hang up now. Goodbye.", "Я кладу трубку. До свидания.")
        return [Say("goodbye", bye), HangUp()]

    def hear(self, act: str, language: str, data: dict[str, str]) -> list[Reaction]:
        """The agent finished a line with this act, in this language, with these details."""
        self.nudged = False
        if self.venue.answering is Answering.VOICEMAIL or not self.menu_passed:
            return []  # a machine does not answer
        if language != self.lang and not self.complained_language:
            self.complained_language = True
            text = self._t(
                "Sorry, I only speak English.",
                "Извините, я не говорю по-английски. Говорите, пожалуйста, по-русски.",
            )
            return [Say("not_understood", text, {"language": self.lang})]
        if act in ("request", "repeat"):
            self.request = Request.from_data(data)
            if self.venue.manner is Manner.HANGS_UP:
                text = "Oh, sorry, I have to take another call—"
                return [Say("hang_up_notice", text), HangUp()]
            return [self._answer_request()]
        if act == "give_name":
            self.request = dataclasses.replace(self.request, name=data.get("name"))
            return [self._answer_request()]
        if act == "accept_offer" and self.offered is not None:
            self.request = dataclasses.replace(self.request, time=self.offered)
            return [self._confirm()]
        if act in ("decline_offer", "bye", "confirm_and_bye", "refused_bye", "no_answer_bye"):
            return [Say("goodbye", self._t("Alright. Goodbye!", "Хорошо. До свидания!"))]
        if act == "hold":
            return [Say("hold_ack", self._t("Sure, take your time.", "Конечно, я подожду."))]
        if act == "still_checking":
            return [Say("hold_ack", self._t("Okay, I'll wait.", "Хорошо, жду."))]
        return [Say("pardon", self._t("Sorry, could you repeat that?", "Простите, повторите?"))]

    # ---- the booking decision ----------------------------------------------------------

    def _hours(self) -> str:
        return f"{dialogue.say_time(self.venue.opens)} to {dialogue.say_time(self.venue.closes)}"

    def _answer_request(self) -> Say:
        r, v = self.request, self.venue
        if r.kind == "restaurant_cancel":  # a cancellation needs only the name
            return (
                self._confirm()
                if r.name
                else Say("ask_name", self._t("Under what name?", "На какое имя?"))
            )
        if r.time is not None and not v.opens <= r.time < v.closes:
            reason = self._t(
                f"we are only open from {self._hours()}", f"мы работаем с {self._hours()}"
            )
            return self._refuse(reason)
        if r.date is not None and r.date.weekday() in v.closed_on:
            day = _WEEKDAYS[r.date.weekday()]
            return self._refuse(self._t(f"we are closed on {day}s", "в этот день мы закрыты"))
        if r.guests is not None and r.guests > v.max_party:
            return self._refuse(
                self._t("we can't seat a party that large", "у нас нет таких столов")
            )
        if v.booking is Booking.FULLY_BOOKED:
            return self._refuse(v.refusal_reason)
        if v.booking is Booking.OFFERS_OTHER_TIME and self.offered is None and r.time is not None:
            self.offered = dialogue.shifted(r.time, v.offer_shift_min)
            asked, other = dialogue.say_time(r.time), dialogue.say_time(self.offered)
            text = self._t(
                f"I'm sorry, {asked} is taken, but I could offer {other}. Would that work?",
                f"К сожалению, на {asked} всё занято, но могу предложить {other}. Подойдёт?",
            )
            return Say("offer", text, {**r.as_data(), "time": other, "asked_time": asked})
        if not r.name:
            return Say("ask_name", self._t("Under what name?", "На какое имя?"))
        return self._confirm()

    def _refuse(self, reason: str) -> Say:
        text = self._t(f"I'm sorry, {reason}.", f"Извините, {reason}.")
        return Say("refuse", text, {"reason": reason})

    def _confirm(self) -> Say:
        self.booked = self.request
        what = dialogue.describe(self.request, self.today, self.lang)
        name = self.request.name or ""
        if self.request.kind == "restaurant_cancel":
            text = self._t(
                f"Done, I've cancelled {what} under {name}.",
                f"Готово, я отменила {what} на имя {name}.",
            )
            return Say("confirm", text, self.request.as_data())
        text = self._t(
            f"Perfect, I've booked {what} under {name}. See you then!",
            f"Отлично, я записала {what} на имя {name}. Ждём вас!",
        )
        return Say("confirm", text, self.request.as_data())
