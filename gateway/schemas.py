"""The public contract's schemas, by the contract's names (shared/contract/openapi.json).

These models only describe the wire format (OpenAPI and request validation); the
gateway builds response bodies straight from core's protobuf replies. Request bodies
derive from `RequestBody`, which refuses (422) what protobuf cannot carry: strings
UTF-8 cannot encode (JSON admits a lone surrogate) and JSON objects too deep or too big
for a Struct.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from gateway import inputs


class TaskKind(enum.StrEnum):
    restaurant_booking = "restaurant_booking"
    restaurant_cancel = "restaurant_cancel"
    doctor_appointment = "doctor_appointment"
    hotel_booking = "hotel_booking"
    concierge = "concierge"
    other = "other"


class BookingStatus(enum.StrEnum):
    active = "active"
    pending_user_confirm = "pending_user_confirm"
    past = "past"
    cancelled = "cancelled"


class BookingType(enum.StrEnum):
    restaurant = "restaurant"
    doctor = "doctor"
    hotel = "hotel"
    other = "other"


class RequestBody(BaseModel):
    """A request body: every string field must be valid Unicode (protobuf sends UTF-8)."""

    @field_validator("*", mode="after", check_fields=False)
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        if isinstance(value, str) and not inputs.encodable(value):
            raise ValueError("contains a string that is not valid Unicode (a lone surrogate)")
        return value


class StartCallBody(RequestBody):
    target_phone: str = Field(
        min_length=4, max_length=32, description="E.164 phone number to dial (e.g. +37441467478)."
    )
    brief: str = Field(
        min_length=1,
        max_length=4000,
        description="Natural-language task for the voice agent. Used as the Gemini system "
        "prompt's TASK section.",
    )
    language: str = Field(
        default="auto", description="ru / en / auto. Drives Gemini speech language."
    )
    kind: TaskKind = Field(
        default=TaskKind.other,
        description="Coarse task classifier — drives no behavior in Phase 3, used for analytics "
        "/ future routing.",
    )
    parsed_slots: dict[str, Any] | None = Field(
        default=None, description="Optional structured fields (date, time, guests, ...)."
    )
    ask_user_mode: str = Field(
        default="any",
        pattern="^(any|stream)$",
        description="Routing for the bot's ask_user tool: `any` (Telegram > Webhook > Terminal > "
        "fallback) or `stream` (SSE + POST /calls/{id}/answer only).",
    )

    @field_validator("parsed_slots", mode="after")
    @classmethod
    def _slots_fit_a_struct(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            problem = inputs.json_problem(value, inputs.MAX_SLOTS_DEPTH, inputs.MAX_SLOTS_BYTES)
            if problem:
                raise ValueError(f"parsed_slots {problem}")
        return value


class CostLine(BaseModel):
    """One measured quantity of one provider, priced at the configured list price."""

    provider: str = Field(description="gemini, deepgram or twilio.")
    item: str = Field(
        description="input_audio_tokens, input_text_tokens, output_audio_tokens, "
        "output_text_tokens, live_audio, batch_audio or call_minutes."
    )
    quantity: float
    unit: str = Field(description="token, second or minute.")
    unit_price_usd: float
    cost_usd: float


class CostBreakdown(BaseModel):
    """A call's provider cost, estimated from measured usage (not an invoice)."""

    lines: list[CostLine]
    total_usd: float
    currency: str = "USD"


class CallDTO(BaseModel):
    call_id: str
    customer_id: str
    task_id: str
    target_phone: str
    language: str
    status: str
    call_sid: str | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    duration_sec: float | None
    outcome_type: str | None
    outcome_summary: str | None
    outcome_charge_cents: int
    created_at: dt.datetime
    has_recording: bool = False
    recording_url: str | None = None
    reservation_signals: list[str] | None = None
    transcript_full: list[dict[str, Any]] | None = None
    supervisor_decisions: list[dict[str, Any]] | None = None
    cost_breakdown: CostBreakdown | None = Field(
        default=None,
        description="Only in GET /calls/{id}: provider usage and its estimated cost.",
    )


class StartCallResponse(BaseModel):
    call: CallDTO
    task_id: str
    credits_reserved: int
    owner_pod: str | None = None


class QueuedCallResponse(BaseModel):
    call_id: str
    queue_id: str
    position: int
    status: str = "queued"


class CancelResponse(BaseModel):
    cancelled: bool


class AnswerBody(RequestBody):
    answer: str = Field(
        min_length=1, max_length=4000, description="Free text the bot will dictate to the operator."
    )
    request_id: str | None = Field(
        default=None,
        max_length=64,
        description="Optional request_id from the ask_user event; omitted = oldest pending (FIFO).",
    )
    mode: Literal["voice", "context"] = Field(
        default="voice",
        description="'voice' (default): speak the answer; 'context': silent guidance.",
    )


class AnswerResponse(BaseModel):
    delivered: bool


class BookingDTO(BaseModel):
    booking_id: str
    customer_id: str
    call_id: str | None = None
    type: BookingType
    target_phone: str
    venue_name: str | None = None
    booking_date: dt.datetime | None = None
    guests: int | None = None
    booking_holder_name: str | None = None
    contact_phone: str | None = None
    details: str | None = None
    status: BookingStatus
    language: str
    refusal_reason: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    booking_local_time: dt.datetime | None = Field(
        default=None,
        description="Additive: the agreed wall time at the venue (naive, in venue_timezone); "
        "booking_date is the same instant in UTC.",
    )
    venue_timezone: str | None = Field(
        default=None,
        description="Additive: the IANA zone of booking_local_time: the skill's "
        "venue_timezone input, else the zone of the venue's number, else UTC.",
    )


class MeDTO(BaseModel):
    api_key_id: str
    customer_id: str
    customer_name: str
    api_key_last_4: str | None
    status: str
    quota_limit: int
    current_usage: int
    quota_period: str
    ask_user_webhook_url: str | None
    ask_user_webhook_configured: bool
    max_concurrent_calls: int
    is_admin: bool = False
    maintenance: dict[str, Any] | None = None


class SetWebhookRequest(RequestBody):
    url: str = Field(
        min_length=1,
        max_length=2083,
        json_schema_extra={"format": "uri"},
        description="HTTPS endpoint to POST ask_user questions to.",
    )
    regenerate_secret: bool = Field(
        default=True, description="If true, issue a new HMAC secret (invalidates the previous one)."
    )


class SetWebhookResponse(BaseModel):
    url: str
    secret: str | None = Field(
        default=None, description="HMAC signing key — returned only on regeneration, shown ONCE."
    )


class ClearWebhookResponse(BaseModel):
    cleared: bool = True


class SetLimitsRequest(RequestBody):
    max_concurrent_calls: int = Field(
        ge=1,
        le=100,
        description="Maximum number of calls the customer can have in flight simultaneously. "
        "Defaults to 1. Calls counted as in-flight: scheduled / dialing / in_progress.",
    )


class LimitsResponse(BaseModel):
    max_concurrent_calls: int


class SkillSummary(BaseModel):
    skill_id: str
    title: str
    description: str
    manifest_url: str
    run_url: str


class SkillRunResponse(BaseModel):
    skill_run_id: str
    call_id: str
    call_sid: str | None
    owner_pod: str | None
    status: str
    credits_reserved: int
    status_url: str
    answer_url: str
    recording_url: str
    replayed: bool = False
    expected_next_steps: list[str]
