"""What the two simulated speakers mean, shared by the venue and the agent stand-in.

Neither side of the simulated world understands speech. Each line carries, next to its text
and audio, an *act* ("request", "offer", "confirm", ...) and its details as plain strings,
which is what the other side "understood". This module holds that vocabulary: the booking
`Request` both sides reason about, how the agent reads one out of a free-text brief plus
`parsed_slots` (English or Russian, tolerant of missing pieces), and how dates and times are
said aloud in each language.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping
from typing import Any

NOUNS = {
    "en": {"doctor_appointment": "an appointment", "hotel_booking": "a room"},
    "ru": {"doctor_appointment": "запись на приём", "hotel_booking": "номер"},
}
DEFAULT_NOUN = {"en": "a table", "ru": "столик"}
_WORD_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "двоих": 2, "троих": 3, "четверых": 4, "пятерых": 5, "шестерых": 6,
}  # fmt: skip
_WEEKDAYS = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5,
    "sunday": 6, "понедельник": 0, "вторник": 1, "среду": 2, "четверг": 3, "пятницу": 4,
    "субботу": 5, "воскресенье": 6,
}  # fmt: skip
_GUEST_KEYS = ("guests", "party_size", "people", "persons", "covers", "pax", "party", "guest_count")
_NAME_KEYS = ("holder_name", "name", "customer_name", "guest_name", "under", "booking_name")


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A booking as one side understands it; any part may be unknown (None)."""

    date: datetime.date | None = None
    time: datetime.time | None = None
    guests: int | None = None
    name: str | None = None
    kind: str = "restaurant_booking"

    @property
    def date_time(self) -> str | None:
        """ISO 8601 local `YYYY-MM-DDTHH:MM`, as `end_call` reports it."""
        if self.date is None or self.time is None:
            return None
        return f"{self.date.isoformat()}T{self.time.strftime('%H:%M')}"

    def as_data(self) -> dict[str, str]:
        """The request as a line's data (what the listener understood)."""
        data = {"kind": self.kind}
        if self.date is not None:
            data["date"] = self.date.isoformat()
        if self.time is not None:
            data["time"] = self.time.strftime("%H:%M")
        if self.guests is not None:
            data["guests"] = str(self.guests)
        if self.name:
            data["name"] = self.name
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> Request:
        return cls(
            date=datetime.date.fromisoformat(data["date"]) if data.get("date") else None,
            time=parse_time(data.get("time", "")),
            guests=int(data["guests"]) if data.get("guests", "").isdigit() else None,
            name=data.get("name") or None,
            kind=data.get("kind", "restaurant_booking"),
        )


def parse_time(text: str) -> datetime.time | None:
    """'19:00', '19.30', '7pm', '7:30 pm', 'в 19' → a time; None if there is none."""
    text = text.strip().lower()
    if m := re.search(r"\b(\d{1,2})[:.h](\d{2})\s*(am|pm)?\b", text):
        hour, minute, half = int(m.group(1)), int(m.group(2)), m.group(3)
    elif m := re.search(r"\b(\d{1,2})\s*(am|pm)\b", text):
        hour, minute, half = int(m.group(1)), 0, m.group(2)
    elif m := re.search(r"(?:\bat|(?<!\w)в)\s+(\d{1,2})\b(?![:.\d])", text) or re.fullmatch(
        r"(\d{1,2})", text
    ):
        hour, minute, half = int(m.group(1)), 0, None
    else:
        return None
    if half == "pm" and hour < 12:
        hour += 12
    elif half == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        return None
    return datetime.time(hour, minute)


def parse_date(text: str, today: datetime.date) -> datetime.date | None:
    """An ISO date, today/tomorrow (and Russian), or the next named weekday."""
    text = text.lower()
    if m := re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", text):
        try:
            return datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return None
    if re.search(r"послезавтра|day after tomorrow", text):
        return today + datetime.timedelta(days=2)
    if re.search(r"\btomorrow\b|завтра", text):
        return today + datetime.timedelta(days=1)
    if re.search(r"\btoday\b|\btonight\b|сегодня", text):
        return today
    for word, weekday in _WEEKDAYS.items():
        if re.search(rf"(?<!\w){word}(?!\w)", text):
            return today + datetime.timedelta(days=(weekday - today.weekday()) % 7 or 7)
    return None


def _guests(text: str) -> int | None:
    lowered = text.lower()
    if m := re.search(
        r"\b(\d{1,3})\s*(?:people|persons|person|guests|pax|adults|covers|человек|чел|персон|гост)",
        lowered,
    ):
        return int(m.group(1))
    if m := re.search(r"(?:\bfor|(?<!\w)на)\s+(\d{1,3})\b(?![:.\d])", lowered):
        return int(m.group(1))
    for word, number in _WORD_NUMBERS.items():
        if re.search(rf"(?:\bfor|(?<!\w)на)\s+{word}\b", lowered):
            return number
    return None


def _name(text: str) -> str | None:
    patterns = (
        r"\bunder (?:the name )?(?:of )?([A-ZА-ЯЁ][\w'\-]+)",
        r"\bname(?: is|:)?\s+([A-ZА-ЯЁ][\w'\-]+)",
        r"на имя\s+([A-ZА-ЯЁ][\w'\-]+)",
        r"\bfor ([A-Z][a-z]+)\b(?! \d)",
    )
    for pattern in patterns:
        if m := re.search(pattern, text):
            return m.group(1)
    return None


def _slot(slots: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = slots.get(key)
        if value not in (None, "", [], {}):
            return str(value)
    return None


def parse_request(
    brief: str, slots: Mapping[str, Any], *, today: datetime.date, kind: str = "restaurant_booking"
) -> Request:
    """The booking a brief asks for; `parsed_slots` win over what the text says."""
    when = _slot(slots, ("date_time", "datetime", "when"))
    date_text = _slot(slots, ("date", "day")) or when or ""
    time_text = _slot(slots, ("time", "start_time", "at")) or (when or "").partition("T")[2]
    date = parse_date(date_text, today) or parse_date(brief, today)
    time = parse_time(time_text) or parse_time(brief)
    guests_text = _slot(slots, _GUEST_KEYS)
    guests = int(float(guests_text)) if guests_text and _is_number(guests_text) else _guests(brief)
    name = _slot(slots, _NAME_KEYS) or _name(brief)
    if time is not None and date is None:
        date = today
    return Request(date=date, time=time, guests=guests, name=name, kind=kind)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def language_of(text: str) -> str:
    """'ru' when the text is mostly Cyrillic, else 'en'."""
    cyrillic = len(re.findall(r"[а-яёА-ЯЁ]", text))
    latin = len(re.findall(r"[a-zA-Z]", text))
    return "ru" if cyrillic > latin else "en"


def say_date(date: datetime.date | None, today: datetime.date, language: str) -> str:
    if date is None:
        return ""
    if date == today:
        return "сегодня" if language == "ru" else "today"
    if date == today + datetime.timedelta(days=1):
        return "завтра" if language == "ru" else "tomorrow"
    return date.strftime("%d.%m") if language == "ru" else f"on {date.strftime('%B %d')}"


def say_time(time: datetime.time | None) -> str:
    return time.strftime("%H:%M") if time is not None else ""


def noun(kind: str, language: str) -> str:
    return NOUNS.get(language, {}).get(kind, DEFAULT_NOUN.get(language, "a table"))


def people(guests: int | None, language: str) -> str:
    if guests is None:
        return ""
    if language == "ru":
        few = 2 <= guests % 10 <= 4 and guests // 10 % 10 != 1
        return f"на {guests} {'человека' if few else 'человек'}"
    return f"for {guests} {'person' if guests == 1 else 'people'}"


def describe(request: Request, today: datetime.date, language: str) -> str:
    """'a table for 2 people tomorrow at 19:00' (without the name)."""
    parts = [noun(request.kind, language), people(request.guests, language)]
    parts.append(say_date(request.date, today, language))
    if request.time is not None:
        parts.append(("в " if language == "ru" else "at ") + say_time(request.time))
    return " ".join(p for p in parts if p)


def shifted(time: datetime.time, minutes: int) -> datetime.time:
    """`time` moved by `minutes`, kept within the same day."""
    total = min(23 * 60 + 59, max(0, time.hour * 60 + time.minute + minutes))
    return datetime.time(total // 60, total % 60)
