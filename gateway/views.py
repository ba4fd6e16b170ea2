"""Protobuf replies from core → the contract's JSON bodies (plain dicts, no re-validation)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from callagent.v1 import accounts_pb2, bookings_pb2, calls_pb2, skills_pb2
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message


def iso(message: Message, field: str, *, naive: bool = False) -> str | None:
    if not message.HasField(field):
        return None
    value: timestamp_pb2.Timestamp = getattr(message, field)
    moment = value.ToDatetime(tzinfo=dt.UTC)
    if naive:
        moment = moment.replace(tzinfo=None)
    return moment.isoformat()


def opt(message: Message, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def me(m: accounts_pb2.Me) -> dict[str, Any]:
    return {
        "api_key_id": m.api_key_id,
        "customer_id": m.customer_id,
        "customer_name": m.customer_name,
        "api_key_last_4": opt(m, "api_key_last_4"),
        "status": m.status,
        "quota_limit": m.quota_limit,
        "current_usage": m.current_usage,
        "quota_period": m.quota_period,
        "ask_user_webhook_url": opt(m, "ask_user_webhook_url"),
        "ask_user_webhook_configured": m.ask_user_webhook_configured,
        "max_concurrent_calls": m.max_concurrent_calls,
        "is_admin": m.is_admin,
        "maintenance": json_format.MessageToDict(m.maintenance)
        if m.HasField("maintenance")
        else None,
    }


def booking(b: bookings_pb2.Booking) -> dict[str, Any]:
    return {
        "booking_id": b.booking_id,
        "customer_id": b.customer_id,
        "call_id": opt(b, "call_id"),
        "type": b.type,
        "target_phone": b.target_phone,
        "venue_name": opt(b, "venue_name"),
        "booking_date": iso(b, "booking_date", naive=True),
        "guests": opt(b, "guests"),
        "booking_holder_name": opt(b, "booking_holder_name"),
        "contact_phone": opt(b, "contact_phone"),
        "details": opt(b, "details"),
        "status": b.status,
        "language": b.language,
        "refusal_reason": opt(b, "refusal_reason"),
        "created_at": iso(b, "created_at"),
        "updated_at": iso(b, "updated_at"),
        "booking_local_time": opt(b, "booking_local_time"),
        "venue_timezone": opt(b, "venue_timezone"),
    }


def call(c: calls_pb2.Call) -> dict[str, Any]:
    body: dict[str, Any] = {
        "call_id": c.call_id,
        "customer_id": c.customer_id,
        "task_id": c.task_id,
        "target_phone": c.target_phone,
        "language": c.language,
        "status": c.status,
        "call_sid": opt(c, "call_sid"),
        "started_at": iso(c, "started_at"),
        "ended_at": iso(c, "ended_at"),
        "duration_sec": opt(c, "duration_sec"),
        "outcome_type": opt(c, "outcome_type"),
        "outcome_summary": opt(c, "outcome_summary"),
        "outcome_charge_cents": c.outcome_charge_cents,
        "created_at": iso(c, "created_at"),
        "has_recording": c.has_recording,
        "recording_url": opt(c, "recording_url"),
        "reservation_signals": list(c.reservation_signals),
        "transcript_full": None,
        "supervisor_decisions": None,
    }
    if c.details_included:
        body["transcript_full"] = orjson.loads(c.transcript_full_json or b"[]")
        body["supervisor_decisions"] = orjson.loads(c.supervisor_decisions_json or b"[]")
        if c.HasField("cost_breakdown"):
            body["cost_breakdown"] = cost_breakdown(c.cost_breakdown)
    return body


def cost_breakdown(b: calls_pb2.CostBreakdown) -> dict[str, Any]:
    lines = [
        {
            "provider": line.provider,
            "item": line.item,
            "quantity": line.quantity,
            "unit": line.unit,
            "unit_price_usd": line.unit_price_usd,
            "cost_usd": line.cost_usd,
        }
        for line in b.lines
    ]
    return {"lines": lines, "total_usd": b.total_usd, "currency": b.currency}


def skill_run(r: skills_pb2.RunSkillResponse) -> dict[str, Any]:
    return {
        "skill_run_id": r.skill_run_id,
        "call_id": r.call_id,
        "call_sid": opt(r, "call_sid"),
        "owner_pod": opt(r, "owner_pod"),
        "status": r.status,
        "credits_reserved": r.credits_reserved,
        "status_url": r.status_url,
        "answer_url": r.answer_url,
        "recording_url": r.recording_url,
        "replayed": r.replayed,
        "expected_next_steps": list(r.expected_next_steps),
    }


def _whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles: give back the integers they were (120.0 → 120), so
    clients with integer types can read the millisecond fields."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def merged_transcript(t: struct_pb2.Struct) -> dict[str, Any]:
    body: dict[str, Any] = _whole_numbers(json_format.MessageToDict(t))
    return body
