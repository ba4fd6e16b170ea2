"""Skills: named, schema-checked recipes that turn an agent's structured input into a call task.

An AI agent should not have to write a good phone brief; it should fill in a form. A skill
is that form (a JSON Schema, draft 2020-12) plus a pure function from a valid form to the
task a call runs on: brief, language, kind, parsed slots and ask_user routing. The registry
serves the list and each skill's manifest as canonical bytes (sorted keys, no whitespace), so
every core process answers a manifest with the same bytes and the same strong ETag, and an
agent's HTTP cache stays valid across replicas and restarts. Nothing here does I/O: the RPC
layer runs the task through `tasks.validate` and the normal start path.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match

from core.domain import call_states, errors, idempotency, tasks, texts
from core.domain.errors import CallagentError

ANSWER_MODES = ("voice", "context")
INPUT_ERROR_REASON = "INVALID_ARGUMENT_INPUT"
CALL_ID_PLACEHOLDER = "{call_id}"

# What each ask_user channel means, in the order the manifest lists them.
ASK_USER_CHANNEL_NOTES = {
    "stream": "questions arrive only as ask_user events on GET /calls/{call_id}/events",
    "any": "questions go to every configured channel (webhook, Telegram) and the stream",
}
if set(ASK_USER_CHANNEL_NOTES) != set(tasks.ASK_USER_MODES):
    raise AssertionError("every ask_user mode needs a channel note")

# What POST /skills/{id}/run can answer besides 201/202, in words for a skill's caller:
# (reason, meaning). The HTTP status of each comes from the reason table.
_RUN_ERRORS: tuple[tuple[str, str], ...] = (
    (INPUT_ERROR_REASON, "The input does not match input_schema; metadata.field names it."),
    ("INVALID_ARGUMENT_PHONE", "The phone number is not a dialable E.164 number."),
    ("IDEMPOTENCY_KEY_TOO_LONG", "idempotency_key_too_long: the key exceeds 255 chars."),
    ("UNAUTHENTICATED_KEY", "The X-API-Key header is missing, unknown or revoked."),
    (
        "ASK_USER_CHANNEL_MISSING",
        "ask_user_mode 'any' needs a webhook (PUT /users/me/webhook); or pass 'stream'.",
    ),
    ("QUOTA_EXCEEDED", "Reserving credits for the call would exceed the monthly quota."),
    ("NOT_FOUND", "No skill with this skill_id."),
    (
        "CONCURRENCY_LIMIT",
        "Too many calls in flight (only when dialed directly; a queued run never gets it).",
    ),
    ("IDEMPOTENCY_CONFLICT", "idempotency_conflict: the same key came with another body."),
    (
        "IDEMPOTENCY_IN_PROGRESS",
        "idempotency_in_progress: the first request with this key is still running; "
        "retry later with the same key.",
    ),
    (
        "IDEMPOTENCY_STATE_UNKNOWN",
        "idempotency_state_unknown: the first request stalled and may have dialed; check "
        "GET /calls?since=... before retrying with a NEW key.",
    ),
    ("DIAL_FAILED", "The carrier refused the call; no credits were kept."),
    ("MAINTENANCE", "New calls are paused for maintenance; see message and resume_at."),
)
RUN_ERRORS: tuple[tuple[int, str, str], ...] = tuple(
    (errors.REASONS[reason].http_status, reason, meaning) for reason, meaning in _RUN_ERRORS
)


@dataclasses.dataclass(frozen=True, slots=True)
class SkillTask:
    """What a skill run asks the call service to do; field names match `calls.StartRequest`."""

    target_phone: str
    brief: str
    language: str
    kind: str
    parsed_slots: dict[str, Any]
    ask_user_mode: str


@dataclasses.dataclass(frozen=True, slots=True)
class SkillSummary:
    """One row of GET /skills."""

    skill_id: str
    title: str
    description: str
    manifest_url: str
    run_url: str


@dataclasses.dataclass(frozen=True, slots=True)
class Skill:
    """A skill: its public description, input schema, and the pure input → task function.

    `to_task` expects input that already passed `input_schema` (Registry.validate checks
    both); it still raises for rules a schema cannot state, such as check_out > check_in.
    """

    skill_id: str
    title: str
    description: str
    kind: str
    input_schema: Mapping[str, Any]
    capabilities: Mapping[str, Any]
    build: Callable[[Mapping[str, Any]], SkillTask] = dataclasses.field(compare=False, repr=False)

    def to_task(self, data: Mapping[str, Any]) -> SkillTask:
        return self.build(data)


def capabilities(languages: Sequence[str] = tasks.LANGUAGES) -> dict[str, Any]:
    """The capability block every shipped skill shares."""
    return {
        "languages": list(languages),
        "brief_language": "English when language is en or auto, Russian when ru",
        "ask_user_channels": list(ASK_USER_CHANNEL_NOTES),
        "ask_user_channel_notes": dict(ASK_USER_CHANNEL_NOTES),
        "answer_modes": list(ANSWER_MODES),
        "answer_mode_notes": {
            "voice": "the agent says the answer to the person on the line",
            "context": "silent guidance the agent acts on without saying it",
        },
        "queue_behaviour": "201 when dialed directly, 202 when the platform queues",
        "idempotency": "Idempotency-Key header, 24 h, Stripe semantics",
    }


def input_error(field: str, message: str) -> CallagentError:
    """The one shape of a bad-input error: the message starts with the field's path."""
    return CallagentError(INPUT_ERROR_REASON, f"{field}: {message}", field=field)


def expected_next_steps(call_id: str, queued: bool, ask_user_mode: str) -> list[str]:
    """Plain-words guidance for the agent that just ran a skill, in the order it needs it."""
    call = f"/calls/{call_id}"
    if queued:
        first = (
            f"The call is queued (status queued): the platform dials it when a line is free. "
            f"Poll GET {call} until the status leaves queued, or follow GET {call}/events."
        )
    else:
        first = (
            f"The call is being dialed now. Follow GET {call}/events (Server-Sent Events; "
            f"reconnect with the Last-Event-ID header to resume without gaps) or poll "
            f"GET {call} every few seconds."
        )
    if ask_user_mode == "stream":
        where = (
            f"it arrives only as an ask_user event on GET {call}/events, so keep that "
            f"stream open while the call is live"
        )
    else:
        where = (
            f"it arrives as an ask_user event on GET {call}/events and at your configured webhook"
        )
    return [
        first,
        f"The voice agent may ask you a question mid-call: {where}.",
        f"Answer quickly, because the person on the line is waiting: POST {call}/answer with "
        f'{{"answer": "...", "request_id": "<request_id from the ask_user event>", '
        f'"mode": "voice"}}. Use mode "context" for silent guidance the agent should act on '
        f"without saying it.",
        f"The call is over when its status is one of {', '.join(call_states.TERMINAL_IN_ORDER)}; "
        f"GET {call} then carries the outcome, summary and transcript, GET "
        f"{call}/transcript-merged the whole conversation turn by turn (202 until it is "
        f"ready), and GET /v1/booking/bookings any booking it made.",
        f"To stop the call, POST {call}/cancel; it is safe to retry.",
        "If this response was lost or timed out, retry the same request with the same "
        "Idempotency-Key: you get the same response back (replayed: true) and no second call. "
        "On 409 idempotency_in_progress retry later with the same key; on 409 "
        "idempotency_state_unknown check GET /calls?since=... before using a NEW key.",
    ]


def _field_of(error: ValidationError) -> str:
    """The path of the field an error is about, with keywords that report on the parent
    object (required, additionalProperties) pointed at the offending property instead."""
    path = [str(part) for part in error.absolute_path]
    instance, schema = error.instance, error.schema
    if not isinstance(instance, Mapping) or not isinstance(schema, Mapping):
        return "/".join(path) or "(root)"
    if error.validator == "required":
        # One error per missing name; only its message says which.
        missing = [name for name in schema["required"] if error.message.startswith(repr(name))]
        path += [str(name) for name in missing[:1]]
    elif error.validator == "additionalProperties":
        known = schema.get("properties", {})
        extra = sorted(str(name) for name in instance if name not in known)
        path += extra[:1]
    return "/".join(path) or "(root)"


def _manifest(skill: Skill) -> dict[str, Any]:
    path = f"/skills/{skill.skill_id}/run"
    steps = {
        status: {
            mode: expected_next_steps(CALL_ID_PLACEHOLDER, queued, mode)
            for mode in tasks.ASK_USER_MODES
        }
        for status, queued in (("201", False), ("202", True))
    }
    return {
        "skill_id": skill.skill_id,
        "title": skill.title,
        "description": skill.description,
        "kind": skill.kind,
        "input_schema": skill.input_schema,
        "capabilities": skill.capabilities,
        "run": {
            "method": "POST",
            "path": path,
            "body": "a JSON object that matches input_schema",
            "headers": {
                "X-API-Key": {"required": True, "description": "your API key"},
                "Idempotency-Key": {
                    "required": False,
                    "max_length": idempotency.MAX_KEY_LENGTH,
                    "retention_hours": 24,
                    "description": "any unique string; a retry with the same key and body "
                    "replays the first response instead of dialing again",
                },
            },
            "responses": {
                "201": {"schema": "SkillRunResponse", "description": "dialed directly"},
                "202": {"schema": "SkillRunResponse", "description": "queued; dialed later"},
            },
            "errors": [
                {"status": status, "code": code, "meaning": meaning}
                for status, code, meaning in RUN_ERRORS
            ],
        },
        "expected_next_steps": {
            "call_id_placeholder": CALL_ID_PLACEHOLDER,
            "by_status_and_ask_user_mode": steps,
        },
    }


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    skill: Skill
    validator: Draft202012Validator
    manifest: bytes
    etag: str


class Registry:
    """The skills a core serves, with their manifests rendered once at construction.

    The skills are passed in (core.main passes `skill_catalog.SKILLS`, which imports this
    module). Order is the order given (the catalog lists the most common skill first). Manifests are
    frozen as bytes up front, so later mutation of a schema dict cannot make two answers for
    the same ETag.
    """

    def __init__(self, skills: Iterable[Skill]) -> None:
        self._entries: dict[str, _Entry] = {}
        for skill in skills:
            if skill.skill_id in self._entries:
                raise ValueError(f"duplicate skill_id {skill.skill_id!r}")
            Draft202012Validator.check_schema(skill.input_schema)
            manifest = orjson.dumps(_manifest(skill), option=orjson.OPT_SORT_KEYS)
            self._entries[skill.skill_id] = _Entry(
                skill=skill,
                validator=Draft202012Validator(skill.input_schema, format_checker=FormatChecker()),
                manifest=manifest,
                etag=f'"{hashlib.sha256(manifest).hexdigest()[:32]}"',
            )

    def _entry(self, skill_id: str) -> _Entry:
        entry = self._entries.get(skill_id)
        if entry is None:
            raise errors.not_found("skill")
        return entry

    def get(self, skill_id: str) -> Skill:
        """Raises: CallagentError NOT_FOUND for an unknown skill."""
        return self._entry(skill_id).skill

    def manifest_json(self, skill_id: str) -> bytes:
        """Canonical manifest bytes (sorted keys, compact); identical in every process."""
        return self._entry(skill_id).manifest

    def etag(self, skill_id: str) -> str:
        """A quoted strong ETag: the first 32 hex digits of sha256(manifest bytes)."""
        return self._entry(skill_id).etag

    def validate(self, skill_id: str, data: Any) -> SkillTask:
        """Check `data` against the skill's schema, then build its task.

        Raises:
            CallagentError: NOT_FOUND for an unknown skill; INPUT_ERROR_REASON with a message
                starting "<field>: " and metadata field=<field> for bad input.
        """
        entry = self._entry(skill_id)
        where = texts.nul_path(data)
        if where is not None:
            raise input_error(where, "contains a NUL character, which cannot be stored")
        error = best_match(entry.validator.iter_errors(data))
        if error is not None:
            field = _field_of(error)
            message = error.message
            hint = error.schema.get("description") if isinstance(error.schema, Mapping) else None
            if error.validator in ("pattern", "format") and hint:
                message += f" (expected: {hint})"
            raise input_error(field, message)
        return entry.skill.to_task(data)

    def list(self) -> builtins.list[SkillSummary]:
        """Every skill's summary, in registry order."""
        return [
            SkillSummary(
                skill_id=entry.skill.skill_id,
                title=entry.skill.title,
                description=entry.skill.description,
                manifest_url=f"/skills/{entry.skill.skill_id}/manifest",
                run_url=f"/skills/{entry.skill.skill_id}/run",
            )
            for entry in self._entries.values()
        ]
