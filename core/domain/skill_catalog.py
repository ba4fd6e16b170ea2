"""The shipped skills: their input schemas and the briefs they write, in English and Russian.

A brief is the voice agent's whole task, so each one states every fact the agent must say,
what it may accept on its own, when it must ask the customer instead, and what to confirm
before hanging up. Briefs are English for language en or auto and Russian for ru. Dates are
spelled out with the weekday (computed, never looked up from a locale) because venues
confirm by weekday, and a wrong weekday is how a date typo gets caught on the call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from core.domain import booking_time, skills, tasks
from core.domain.skills import Skill, SkillTask

_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_EN_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_EN_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_RU_MONTHS = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)
_RU_DAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")
_RU_TIME_OF_DAY = {"morning": "утром", "afternoon": "днём", "evening": "вечером"}


def _phone(what: str) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": r"^\+[1-9][0-9]{6,14}$",
        "description": f"the {what}'s number in E.164, e.g. +37441467478",
    }


def _text(description: str, max_length: int) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "pattern": r"\S",
        "description": description,
    }


def _date(description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date",
        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        "description": f"{description}, YYYY-MM-DD",
    }


_TIME = {
    "type": "string",
    "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
    "description": "local time at the venue, 24-hour HH:MM",
}
_TIMEZONE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "the venue's IANA time zone, e.g. Europe/Berlin (default: the zone of its "
    "number, else UTC); the booking's UTC time is computed in it",
}
_COMMON = {
    "language": {
        "enum": list(tasks.LANGUAGES),
        "default": "auto",
        "description": "language of the call: ru, en, or auto (the agent follows the callee)",
    },
    "ask_user_mode": {
        "enum": ["any", "stream"],
        "default": "any",
        "description": "where mid-call questions go: stream (only GET /calls/{id}/events) "
        "or any (every configured channel)",
    },
}


def _schema(
    title: str, required: list[str], properties: dict[str, Any], example: dict[str, Any]
) -> dict[str, Any]:
    return {
        "$schema": _SCHEMA_DIALECT,
        "title": title,
        "type": "object",
        "required": required,
        "properties": {**properties, **_COMMON},
        "additionalProperties": False,
        "examples": [example],
    }


def _clean(value: Any) -> str:
    """One line of text: agents send newlines and runs of spaces the brief should not carry."""
    return " ".join(str(value).split())


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def _day(value: str, ru: bool) -> str:
    day = dt.date.fromisoformat(value)
    if ru:
        return f"{day.day} {_RU_MONTHS[day.month - 1]} {day.year} г. ({_RU_DAYS[day.weekday()]})"
    return f"{_EN_DAYS[day.weekday()]}, {day.day} {_EN_MONTHS[day.month - 1]} {day.year}"


def _ru_count(n: int, one: str, few: str, many: str) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return f"{n} {one}"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return f"{n} {few}"
    return f"{n} {many}"


def _en_count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _task(
    data: Mapping[str, Any], phone_field: str, kind: str, brief: str, slots: dict[str, Any]
) -> SkillTask:
    return SkillTask(
        target_phone=str(data[phone_field]).strip(),
        brief=brief,
        language=str(data.get("language", "auto")),
        kind=kind,
        parsed_slots=slots,
        ask_user_mode=str(data.get("ask_user_mode", "any")),
    )


def _optional(data: Mapping[str, Any], *fields: str) -> dict[str, str]:
    """The optional text inputs given; `venue_timezone` must name a real IANA zone."""
    found = {field: _clean(data[field]) for field in fields if field in data}
    zone = found.get("venue_timezone")
    if zone is not None and booking_time.valid_zone(zone) is None:
        raise skills.input_error("venue_timezone", f"{zone!r} is not an IANA time zone")
    return found


def _restaurant_booking(data: Mapping[str, Any]) -> SkillTask:
    ru = data.get("language") == "ru"
    guests, time, name = int(data["party_size"]), str(data["time"]), _clean(data["name"])
    extra = _optional(data, "venue_name", "notes", "venue_timezone")
    flex = int(data.get("flexibility_minutes", 0))
    venue = extra.get("venue_name")
    if ru:
        people = _ru_count(guests, "человека", "человека", "человек")
        parts = [
            f"Позвоните в ресторан{f' «{venue}»' if venue else ''} и забронируйте столик на "
            f"{people} на {_day(data['date'], True)} в {time} на имя {name}.",
            f"Если на {time} мест нет, подойдёт любое время в пределах ±{flex} мин. от {time}."
            if flex
            else f"Если на {time} мест нет, не соглашайтесь на другое время, не спросив клиента.",
        ]
        if "notes" in extra:
            parts.append(f"Пожелания клиента: {_sentence(extra['notes'])}")
        parts.append(
            "Перед завершением звонка подтвердите дату, время, число гостей и имя и "
            "сообщите, подтверждена ли бронь."
        )
    else:
        parts = [
            f"Call {venue or 'the restaurant'} and book a table for "
            f"{'1 person' if guests == 1 else f'{guests} people'} on "
            f"{_day(data['date'], False)} at {time}, under the name {name}.",
            f"If {time} is not available, any time within {flex} minutes of it is fine."
            if flex
            else f"If {time} is not available, do not accept another time without asking "
            "the customer first.",
        ]
        if "notes" in extra:
            parts.append(f"Customer's notes: {_sentence(extra['notes'])}")
        parts.append(
            "Before ending the call, confirm the date, time, number of guests and name, "
            "and report whether the booking was confirmed."
        )
    slots: dict[str, Any] = {"date": data["date"], "time": time, "guests": guests, "name": name}
    slots.update(extra)
    if "flexibility_minutes" in data:
        slots["flexibility_minutes"] = flex
    return _task(data, "venue_phone", "restaurant_booking", " ".join(parts), slots)


def _restaurant_cancel(data: Mapping[str, Any]) -> SkillTask:
    ru = data.get("language") == "ru"
    time, name = str(data["time"]), _clean(data["name"])
    extra = _optional(data, "venue_name", "reason", "venue_timezone", "booking_id")
    venue = extra.get("venue_name")
    if ru:
        parts = [
            f"Позвоните в ресторан{f' «{venue}»' if venue else ''} и отмените бронь столика "
            f"на имя {name} на {_day(data['date'], True)} на {time}.",
        ]
        if "reason" in extra:
            parts.append(f"Если спросят о причине: {_sentence(extra['reason'])}")
        parts.append(
            "Добейтесь подтверждения, что бронь отменена. Если бронь не находят, не создавайте "
            "новую и сообщите, что ответили."
        )
    else:
        parts = [
            f"Call {venue or 'the restaurant'} and cancel the table reservation under the name "
            f"{name} for {_day(data['date'], False)} at {time}.",
        ]
        if "reason" in extra:
            parts.append(f"If they ask why: {_sentence(extra['reason'])}")
        parts.append(
            "Make sure they confirm the reservation is cancelled. If they cannot find it, do "
            "not make a new one; report what they said."
        )
    slots: dict[str, Any] = {"date": data["date"], "time": time, "name": name, **extra}
    return _task(data, "venue_phone", "restaurant_cancel", " ".join(parts), slots)


def _doctor_appointment(data: Mapping[str, Any]) -> SkillTask:
    ru = data.get("language") == "ru"
    date_from, date_to = str(data["date_from"]), str(data["date_to"])
    if dt.date.fromisoformat(date_to) < dt.date.fromisoformat(date_from):
        raise skills.input_error("date_to", f"{date_to} is before date_from {date_from}")
    name = _clean(data["patient_name"])
    extra = _optional(data, "reason", "doctor_name", "venue_timezone")
    part_of_day = str(data.get("preferred_time_of_day", "any"))
    doctor = extra.get("doctor_name")
    if ru:
        when = (
            f"на {_day(date_from, True)}"
            if date_from == date_to
            else f"на любой день с {_day(date_from, True)} по {_day(date_to, True)}"
        )
        parts = [
            f"Позвоните в клинику и запишите пациента {name} на приём"
            f"{f' к врачу {doctor}' if doctor else ''} {when}"
            f"{f', желательно {_RU_TIME_OF_DAY[part_of_day]}' if part_of_day != 'any' else ''}."
        ]
        if "reason" in extra:
            parts.append(f"Причина визита: {_sentence(extra['reason'])}")
        parts.append(
            "Попросите самое раннее подходящее время в этом промежутке; подтвердите дату, "
            "время, имя врача и адрес клиники и уточните, что взять с собой. Если в этом "
            "промежутке мест нет, спросите клиента, прежде чем соглашаться на другую дату."
        )
    else:
        when = (
            f"on {_day(date_from, False)}"
            if date_from == date_to
            else f"any day from {_day(date_from, False)} to {_day(date_to, False)}"
        )
        parts = [
            f"Call the clinic and make an appointment for the patient {name}"
            f"{f' with {doctor}' if doctor else ''}, {when}"
            f"{f', preferably in the {part_of_day}' if part_of_day != 'any' else ''}."
        ]
        if "reason" in extra:
            parts.append(f"Reason for the visit: {_sentence(extra['reason'])}")
        parts.append(
            "Ask for the earliest suitable slot in that window; confirm the date, time, "
            "doctor's name and the clinic's address, and ask what the patient should bring. "
            "If nothing is free in that window, ask the customer before accepting another date."
        )
    slots: dict[str, Any] = {"date_from": date_from, "date_to": date_to, "name": name, **extra}
    if "preferred_time_of_day" in data:
        slots["preferred_time_of_day"] = part_of_day
    return _task(data, "clinic_phone", "doctor_appointment", " ".join(parts), slots)


def _hotel_booking(data: Mapping[str, Any]) -> SkillTask:
    ru = data.get("language") == "ru"
    check_in, check_out = str(data["check_in"]), str(data["check_out"])
    nights = (dt.date.fromisoformat(check_out) - dt.date.fromisoformat(check_in)).days
    if nights <= 0:
        raise skills.input_error("check_out", f"{check_out} must be after check_in {check_in}")
    guests, name = int(data["guests"]), _clean(data["guest_name"])
    extra = _optional(data, "hotel_name", "room_type", "venue_timezone")
    hotel, room = extra.get("hotel_name"), extra.get("room_type")
    if ru:
        parts = [
            f"Позвоните в отель{f' «{hotel}»' if hotel else ''} и забронируйте номер"
            f"{f' (тип: {room})' if room else ''} на имя {name}: заезд {_day(check_in, True)}, "
            f"выезд {_day(check_out, True)}, всего {_ru_count(nights, 'ночь', 'ночи', 'ночей')}, "
            f"{_ru_count(guests, 'гость', 'гостя', 'гостей')}.",
            "Узнайте цену за ночь и за всё проживание и входит ли завтрак. Не соглашайтесь на "
            "предоплату и не сообщайте данные карты, не спросив клиента. Перед завершением "
            "звонка подтвердите даты, тип номера, имя гостя и цену.",
        ]
    else:
        parts = [
            f"Call {hotel or 'the hotel'} and book a{f' {room}' if room else ''} room under "
            f"the name {name}: check-in {_day(check_in, False)}, check-out "
            f"{_day(check_out, False)} ({_en_count(nights, 'night')}), "
            f"{_en_count(guests, 'guest')}.",
            "Ask for the price per night and in total, and whether breakfast is included. Do "
            "not agree to a prepayment or give card details without asking the customer. "
            "Before ending the call, confirm the dates, room type, guest name and price.",
        ]
    slots: dict[str, Any] = {
        "check_in": check_in,
        "check_out": check_out,
        "nights": nights,
        "guests": guests,
        "name": name,
        **extra,
    }
    return _task(data, "hotel_phone", "hotel_booking", " ".join(parts), slots)


def _concierge(data: Mapping[str, Any]) -> SkillTask:
    return _task(data, "phone", "concierge", str(data["brief"]).strip(), {})


def _skill(
    skill_id: str,
    title: str,
    description: str,
    schema: dict[str, Any],
    build: Callable[[Mapping[str, Any]], SkillTask],
) -> Skill:
    return Skill(
        skill_id=skill_id,
        title=title,
        description=description,
        kind=skill_id,
        input_schema=schema,
        capabilities=skills.capabilities(),
        build=build,
    )


SKILLS: tuple[Skill, ...] = (
    _skill(
        "restaurant_booking",
        "Book a restaurant table",
        "Calls a restaurant and books a table for a date, time and party size under a name.",
        _schema(
            "restaurant_booking input",
            ["venue_phone", "date", "time", "party_size", "name"],
            {
                "venue_phone": _phone("restaurant"),
                "date": _date("day of the booking"),
                "time": _TIME,
                "party_size": {"type": "integer", "minimum": 1, "maximum": 50},
                "name": _text("name the table is booked under", 100),
                "venue_name": _text("restaurant's name, said on the call", 200),
                "venue_timezone": _TIMEZONE,
                "notes": _text("wishes to pass on (seating, occasion, allergies)", 1000),
                "flexibility_minutes": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 240,
                    "description": "how far from `time` the agent may accept without asking",
                },
            },
            {
                "venue_phone": "+15550101",
                "date": "2030-06-14",
                "time": "19:00",
                "party_size": 4,
                "name": "Anna",
            },
        ),
        _restaurant_booking,
    ),
    _skill(
        "restaurant_cancel",
        "Cancel a restaurant booking",
        "Calls a restaurant and cancels an existing table reservation.",
        _schema(
            "restaurant_cancel input",
            ["venue_phone", "name", "date", "time"],
            {
                "venue_phone": _phone("restaurant"),
                "name": _text("name the table is booked under", 100),
                "date": _date("day of the booking"),
                "time": _TIME,
                "venue_name": _text("restaurant's name, said on the call", 200),
                "venue_timezone": _TIMEZONE,
                "booking_id": _text("the booking to mark cancelled, if known", 64),
                "reason": _text("reason to give if asked", 500),
            },
            {"venue_phone": "+15550101", "name": "Anna", "date": "2030-06-14", "time": "19:00"},
        ),
        _restaurant_cancel,
    ),
    _skill(
        "doctor_appointment",
        "Book a doctor's appointment",
        "Calls a clinic and books the earliest suitable appointment within a date window.",
        _schema(
            "doctor_appointment input",
            ["clinic_phone", "patient_name", "date_from", "date_to"],
            {
                "clinic_phone": _phone("clinic"),
                "patient_name": _text("patient's full name", 100),
                "date_from": _date("first acceptable day"),
                "date_to": _date("last acceptable day (not before date_from)"),
                "preferred_time_of_day": {
                    "enum": ["morning", "afternoon", "evening", "any"],
                    "default": "any",
                },
                "reason": _text("reason for the visit", 500),
                "doctor_name": _text("a specific doctor, if wanted", 100),
                "venue_timezone": _TIMEZONE,
            },
            {
                "clinic_phone": "+15550102",
                "patient_name": "Ivan Petrov",
                "date_from": "2030-06-10",
                "date_to": "2030-06-14",
            },
        ),
        _doctor_appointment,
    ),
    _skill(
        "hotel_booking",
        "Book a hotel room",
        "Calls a hotel and books a room for a stay, asking the price before confirming.",
        _schema(
            "hotel_booking input",
            ["hotel_phone", "guest_name", "check_in", "check_out", "guests"],
            {
                "hotel_phone": _phone("hotel"),
                "guest_name": _text("name the room is booked under", 100),
                "check_in": _date("arrival day"),
                "check_out": _date("departure day (after check_in)"),
                "guests": {"type": "integer", "minimum": 1, "maximum": 20},
                "hotel_name": _text("hotel's name, said on the call", 200),
                "room_type": _text("wanted room type, e.g. double with a sea view", 100),
                "venue_timezone": _TIMEZONE,
            },
            {
                "hotel_phone": "+15550103",
                "guest_name": "Anna Smirnova",
                "check_in": "2030-06-14",
                "check_out": "2030-06-16",
                "guests": 2,
            },
        ),
        _hotel_booking,
    ),
    _skill(
        "concierge",
        "Concierge call",
        "Calls any number with a free-form brief, for tasks no other skill covers.",
        _schema(
            "concierge input",
            ["phone", "brief"],
            {
                "phone": _phone("callee"),
                "brief": _text("the whole task for the voice agent, in plain words", 4000),
            },
            {"phone": "+15550104", "brief": "Ask whether they are open on Sunday."},
        ),
        _concierge,
    ),
)
