"""Skill registry: every skill's input → task, field-named input errors, and manifests that are
the same bytes (and ETag) in every registry and every process."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from core.domain import errors, skill_catalog, skills, tasks
from core.domain.errors import CallagentError

SKILL_IDS = [
    "restaurant_booking",
    "restaurant_cancel",
    "doctor_appointment",
    "hotel_booking",
    "concierge",
]
BOOKING = {
    "venue_phone": "+15550101",
    "date": "2030-06-14",
    "time": "19:00",
    "party_size": 4,
    "name": "Anna",
}
CANCEL = {"venue_phone": "+15550101", "name": "Anna", "date": "2030-06-14", "time": "19:00"}
DOCTOR = {
    "clinic_phone": "+15550102",
    "patient_name": "Ivan Petrov",
    "date_from": "2030-06-10",
    "date_to": "2030-06-14",
}
HOTEL = {
    "hotel_phone": "+15550103",
    "guest_name": "Anna Smirnova",
    "check_in": "2030-06-14",
    "check_out": "2030-06-16",
    "guests": 2,
}


@pytest.fixture(scope="module")
def registry() -> skills.Registry:
    return skills.Registry(skill_catalog.SKILLS)


def _input_error(registry: skills.Registry, skill_id: str, data: Any) -> CallagentError:
    with pytest.raises(CallagentError) as caught:
        registry.validate(skill_id, data)
    err = caught.value
    assert err.reason == skills.INPUT_ERROR_REASON
    assert err.spec.http_status == 400
    return err


def _without(data: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != field}


@pytest.mark.parametrize("skill", skill_catalog.SKILLS, ids=lambda s: s.skill_id)
def test_every_schema_example_becomes_a_task_the_call_service_accepts(
    registry: skills.Registry, skill: skills.Skill
) -> None:
    Draft202012Validator.check_schema(skill.input_schema)
    for example in skill.input_schema["examples"]:
        task = registry.validate(skill.skill_id, example)
        assert task.kind == skill.kind == skill.skill_id
        assert task.kind in tasks.KINDS
        assert (task.language, task.ask_user_mode) == ("auto", "any")
        request = tasks.validate(
            tasks.StartRequest(**dataclasses.asdict(task)), allow_fictional_numbers=True
        )
        assert request.brief == task.brief
        assert request.target_phone == example[next(k for k in example if k.endswith("phone"))]


@pytest.mark.parametrize("skill", skill_catalog.SKILLS, ids=lambda s: s.skill_id)
def test_longest_allowed_input_still_fits_in_a_brief(
    registry: skills.Registry, skill: skills.Skill
) -> None:
    data = dict(skill.input_schema["examples"][0])
    for field, spec in skill.input_schema["properties"].items():
        if field == "venue_timezone":  # must name a real zone; it never reaches the brief
            data[field] = "America/Argentina/ComodRivadavia"
        elif "maxLength" in spec:
            data[field] = "ж" * spec["maxLength"]
    task = registry.validate(skill.skill_id, {**data, "language": "ru"})
    assert len(task.brief) <= tasks.MAX_BRIEF


def test_restaurant_booking_in_english(registry: skills.Registry) -> None:
    task = registry.validate("restaurant_booking", {**BOOKING, "language": "en"})
    for fact in ("book a table", "4 people", "Friday, 14 June 2030", "19:00", "Anna"):
        assert fact in task.brief
    assert "without asking the customer" in task.brief
    assert task.parsed_slots == {"date": "2030-06-14", "time": "19:00", "guests": 4, "name": "Anna"}
    assert (task.target_phone, task.kind, task.language) == (
        "+15550101",
        "restaurant_booking",
        "en",
    )


def test_restaurant_booking_optional_fields_reach_brief_and_slots(
    registry: skills.Registry,
) -> None:
    data = {
        **BOOKING,
        "party_size": 1,
        "venue_name": "Café  Pushkin",
        "notes": "window seat,\n birthday",
        "flexibility_minutes": 30,
        "ask_user_mode": "stream",
    }
    task = registry.validate("restaurant_booking", data)
    assert task.brief.startswith("Call Café Pushkin and book a table for 1 person on ")
    assert "within 30 minutes" in task.brief
    assert "Customer's notes: window seat, birthday." in task.brief
    assert task.ask_user_mode == "stream"
    assert task.parsed_slots == {
        "date": "2030-06-14",
        "time": "19:00",
        "guests": 1,
        "name": "Anna",
        "venue_name": "Café Pushkin",
        "notes": "window seat, birthday",
        "flexibility_minutes": 30,
    }


def test_restaurant_booking_in_russian(registry: skills.Registry) -> None:
    data = {**BOOKING, "name": "Анна", "party_size": 21, "language": "ru", "venue_name": "Пушкин"}
    task = registry.validate("restaurant_booking", data)
    for fact in ("ресторан «Пушкин»", "на 21 человека", "14 июня 2030 г. (пятница)", "в 19:00"):
        assert fact in task.brief
    assert "на имя Анна" in task.brief
    assert task.language == "ru"


def test_restaurant_cancel(registry: skills.Registry) -> None:
    task = registry.validate("restaurant_cancel", {**CANCEL, "reason": "plans changed"})
    for fact in ("cancel", "Anna", "Friday, 14 June 2030", "19:00", "plans changed."):
        assert fact in task.brief
    assert task.kind == "restaurant_cancel"
    assert task.parsed_slots == {
        "date": "2030-06-14",
        "time": "19:00",
        "name": "Anna",
        "reason": "plans changed",
    }
    russian = registry.validate("restaurant_cancel", {**CANCEL, "language": "ru"})
    assert "отмените бронь" in russian.brief and "14 июня 2030 г." in russian.brief


def test_venue_timezone_and_booking_id_reach_the_slots(registry: skills.Registry) -> None:
    extra = {"venue_timezone": "Europe/Berlin", "booking_id": "b-1"}
    task = registry.validate("restaurant_cancel", {**CANCEL, **extra})
    assert task.parsed_slots["venue_timezone"] == "Europe/Berlin"
    assert task.parsed_slots["booking_id"] == "b-1"
    hotel = registry.validate("hotel_booking", {**HOTEL, "venue_timezone": "Asia/Yerevan"})
    assert hotel.parsed_slots["venue_timezone"] == "Asia/Yerevan"


def test_an_unknown_venue_timezone_names_the_field(registry: skills.Registry) -> None:
    err = _input_error(registry, "restaurant_booking", {**BOOKING, "venue_timezone": "Mars/Base"})
    assert err.metadata == {"field": "venue_timezone"}
    assert "IANA" in err.message


def test_doctor_appointment_window(registry: skills.Registry) -> None:
    data = {
        **DOCTOR,
        "preferred_time_of_day": "morning",
        "reason": "back pain",
        "doctor_name": "Dr. Aram Sargsyan",
    }
    task = registry.validate("doctor_appointment", data)
    for fact in (
        "Ivan Petrov",
        "with Dr. Aram Sargsyan",
        "from Monday, 10 June 2030 to Friday, 14 June 2030",
        "preferably in the morning",
        "Reason for the visit: back pain.",
    ):
        assert fact in task.brief
    assert task.kind == "doctor_appointment"
    assert task.parsed_slots == {
        "date_from": "2030-06-10",
        "date_to": "2030-06-14",
        "name": "Ivan Petrov",
        "reason": "back pain",
        "doctor_name": "Dr. Aram Sargsyan",
        "preferred_time_of_day": "morning",
    }


def test_doctor_appointment_single_day_and_russian(registry: skills.Registry) -> None:
    one_day = {**DOCTOR, "date_to": "2030-06-10"}
    assert "on Monday, 10 June 2030." in registry.validate("doctor_appointment", one_day).brief
    russian = registry.validate(
        "doctor_appointment", {**DOCTOR, "language": "ru", "preferred_time_of_day": "evening"}
    )
    assert "с 10 июня 2030 г. (понедельник) по 14 июня 2030 г. (пятница)" in russian.brief
    assert "желательно вечером" in russian.brief


def test_doctor_window_ending_before_it_starts_names_date_to(registry: skills.Registry) -> None:
    err = _input_error(registry, "doctor_appointment", {**DOCTOR, "date_to": "2030-06-09"})
    assert err.metadata == {"field": "date_to"}
    assert err.message.startswith("date_to: ")


def test_hotel_booking(registry: skills.Registry) -> None:
    task = registry.validate("hotel_booking", {**HOTEL, "room_type": "double"})
    for fact in (
        "book a double room",
        "Anna Smirnova",
        "check-in Friday, 14 June 2030",
        "check-out Sunday, 16 June 2030",
        "2 nights",
        "2 guests",
        "card details",
    ):
        assert fact in task.brief
    assert task.kind == "hotel_booking"
    assert task.parsed_slots == {
        "check_in": "2030-06-14",
        "check_out": "2030-06-16",
        "nights": 2,
        "guests": 2,
        "name": "Anna Smirnova",
        "room_type": "double",
    }
    russian = registry.validate("hotel_booking", {**HOTEL, "guests": 1, "language": "ru"})
    assert "всего 2 ночи, 1 гость." in russian.brief


@pytest.mark.parametrize("check_out", ["2030-06-14", "2030-06-01"])
def test_hotel_check_out_not_after_check_in_names_check_out(
    registry: skills.Registry, check_out: str
) -> None:
    err = _input_error(registry, "hotel_booking", {**HOTEL, "check_out": check_out})
    assert err.metadata == {"field": "check_out"}
    assert err.message.startswith("check_out: ") and "check_in" in err.message


def test_concierge_passes_the_brief_through(registry: skills.Registry) -> None:
    brief = "  Ask whether they are open on Sunday.\nIf yes, ask until when.  "
    task = registry.validate("concierge", {"phone": "+15550104", "brief": brief, "language": "en"})
    assert task.brief == brief.strip()
    assert (task.kind, task.language, task.parsed_slots) == ("concierge", "en", {})


@pytest.mark.parametrize(
    ("skill_id", "data", "field", "needle"),
    [
        ("restaurant_booking", _without(BOOKING, "time"), "time", "required"),
        ("restaurant_booking", _without(BOOKING, "venue_phone"), "venue_phone", "required"),
        ("restaurant_booking", {**BOOKING, "party_size": "4"}, "party_size", "not of type"),
        ("restaurant_booking", {**BOOKING, "party_size": True}, "party_size", "not of type"),
        ("restaurant_booking", {**BOOKING, "party_size": 0}, "party_size", "minimum of 1"),
        ("restaurant_booking", {**BOOKING, "party_size": 51}, "party_size", "maximum of 50"),
        ("restaurant_booking", {**BOOKING, "date": "14/06/2030"}, "date", "YYYY-MM-DD"),
        ("restaurant_booking", {**BOOKING, "date": "2030-02-30"}, "date", "is not a 'date'"),
        ("restaurant_booking", {**BOOKING, "time": "25:00"}, "time", "HH:MM"),
        ("restaurant_booking", {**BOOKING, "venue_phone": "x"}, "venue_phone", "E.164"),
        ("restaurant_booking", {**BOOKING, "name": "   "}, "name", "does not match"),
        ("restaurant_booking", {**BOOKING, "language": "fr"}, "language", "'fr' is not one of"),
        ("restaurant_booking", {**BOOKING, "tip": 5}, "tip", "'tip' was unexpected"),
        ("restaurant_cancel", _without(CANCEL, "name"), "name", "required"),
        ("doctor_appointment", {**DOCTOR, "date_from": "tomorrow"}, "date_from", "date"),
        (
            "doctor_appointment",
            {**DOCTOR, "preferred_time_of_day": "noon"},
            "preferred_time_of_day",
            "one of",
        ),
        ("hotel_booking", {**HOTEL, "guests": 2.5}, "guests", "not of type"),
        ("hotel_booking", {**HOTEL, "check_in": 20300614}, "check_in", "not of type"),
        ("concierge", {"phone": "+15550104", "brief": ""}, "brief", "non-empty"),
        (
            "concierge",
            {"phone": "+15550104", "brief": "x", "ask_user_mode": "tg"},
            "ask_user_mode",
            "one of",
        ),
        ("concierge", ["not", "an", "object"], "(root)", "not of type 'object'"),
    ],
)
def test_schema_errors_name_the_field(
    registry: skills.Registry, skill_id: str, data: Any, field: str, needle: str
) -> None:
    err = _input_error(registry, skill_id, data)
    assert err.metadata == {"field": field}
    assert err.message.startswith(f"{field}: ")
    assert needle in err.message


@pytest.mark.parametrize("operation", ["get", "manifest_json", "etag", "validate"])
def test_unknown_skill_is_not_found(registry: skills.Registry, operation: str) -> None:
    args: tuple[Any, ...] = ("no_such_skill", {}) if operation == "validate" else ("no_such_skill",)
    with pytest.raises(CallagentError) as caught:
        getattr(registry, operation)(*args)
    assert caught.value.reason == "NOT_FOUND"
    assert caught.value.message == errors.not_found("skill").message


def test_list_is_in_catalog_order_with_urls() -> None:
    first, second = (
        skills.Registry(skill_catalog.SKILLS).list(),
        skills.Registry(skill_catalog.SKILLS).list(),
    )
    assert first == second
    assert [summary.skill_id for summary in first] == SKILL_IDS
    for summary in first:
        assert summary.manifest_url == f"/skills/{summary.skill_id}/manifest"
        assert summary.run_url == f"/skills/{summary.skill_id}/run"
        assert summary.title and summary.description


def test_manifest_bytes_are_canonical_and_identical_across_registries() -> None:
    one, two = skills.Registry(skill_catalog.SKILLS), skills.Registry(skill_catalog.SKILLS)
    for skill_id in SKILL_IDS:
        body = one.manifest_json(skill_id)
        assert body == one.manifest_json(skill_id) == two.manifest_json(skill_id)
        assert orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) == body
        assert one.etag(skill_id) == two.etag(skill_id)


def test_manifest_bytes_are_identical_in_another_process() -> None:
    script = (
        "import hashlib; from core.domain import skill_catalog, skills; "
        "r = skills.Registry(skill_catalog.SKILLS); "
        "print(' '.join(hashlib.sha256(r.manifest_json(s.skill_id)).hexdigest() "
        "for s in r.list()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    here = skills.Registry(skill_catalog.SKILLS)
    assert other == [hashlib.sha256(here.manifest_json(s)).hexdigest() for s in SKILL_IDS]


def test_manifest_content(registry: skills.Registry) -> None:
    for skill in skill_catalog.SKILLS:
        manifest = orjson.loads(registry.manifest_json(skill.skill_id))
        assert manifest["skill_id"] == skill.skill_id
        assert manifest["input_schema"] == skill.input_schema
        assert manifest["capabilities"]["ask_user_channels"] == ["stream", "any"]
        assert manifest["capabilities"]["answer_modes"] == ["voice", "context"]
        run = manifest["run"]
        assert (run["method"], run["path"]) == ("POST", f"/skills/{skill.skill_id}/run")
        assert run["headers"]["Idempotency-Key"]["required"] is False
        assert set(run["responses"]) == {"201", "202"}
        codes = {(e["status"], e["meaning"].split(":")[0]) for e in run["errors"]}
        for name in ("idempotency_conflict", "idempotency_in_progress"):
            assert (409, name) in codes
        assert (409, "idempotency_state_unknown") in codes
        assert (400, "idempotency_key_too_long") in codes
        steps = manifest["expected_next_steps"]["by_status_and_ask_user_mode"]
        assert steps["202"]["stream"] == skills.expected_next_steps("{call_id}", True, "stream")


def test_etag_is_a_quoted_sha256_prefix_that_follows_the_content() -> None:
    registry = skills.Registry(skill_catalog.SKILLS)
    etag = registry.etag("concierge")
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert etag == f'"{hashlib.sha256(registry.manifest_json("concierge")).hexdigest()[:32]}"'
    concierge = registry.get("concierge")
    changed = skills.Registry([dataclasses.replace(concierge, description="Calls anyone.")])
    assert changed.etag("concierge") != etag
    assert skills.Registry([concierge]).etag("concierge") == etag


def test_registry_rejects_duplicates_and_broken_schemas() -> None:
    concierge = skills.Registry(skill_catalog.SKILLS).get("concierge")
    with pytest.raises(ValueError, match="duplicate"):
        skills.Registry([concierge, concierge])
    with pytest.raises(SchemaError):
        skills.Registry([dataclasses.replace(concierge, input_schema={"type": 5})])


def test_expected_next_steps_follow_queueing_and_ask_user_mode() -> None:
    direct = skills.expected_next_steps("call_1", queued=False, ask_user_mode="any")
    queued = skills.expected_next_steps("call_1", queued=True, ask_user_mode="stream")
    assert "dialed now" in direct[0] and "GET /calls/call_1/events" in direct[0]
    assert "queued" in queued[0] and "Poll GET /calls/call_1" in queued[0]
    assert "webhook" in direct[1]
    assert "only as an ask_user event" in queued[1]
    text = " ".join(direct)
    for fact in ("POST /calls/call_1/answer", "request_id", "same Idempotency-Key", "cancel"):
        assert fact in text
    # Only admin keys may fetch the recording: customers are sent to the merged transcript.
    assert "GET /calls/call_1/transcript-merged" in text and "/recording" not in text
