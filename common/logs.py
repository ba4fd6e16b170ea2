"""Log lines that say which call they belong to, as text for a terminal or JSON for a collector.

Where a call's work starts (a core RPC about a call, media's bridge task, a gateway request on
`/v1/calls/{call_id}`) the code `bind()`s `call_id` (and `customer_id` once known) into a
context variable; asyncio copies it into every task started from there, so each line logged
while handling that call carries them, with the current OpenTelemetry `trace_id`, without
passing them around. A field given in a record's `extra` wins over the bound one.

JSON is rendered with the standard library (one object per line, the `extra` fields at the top
level), so no logging dependency is added; `LOG_FORMAT=json` turns it on, text is the default.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import types
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from opentelemetry import trace

LogFormat = Literal["text", "json"]
CALL_FIELDS = ("call_id", "customer_id", "trace_id")

_EMPTY: Mapping[str, str] = types.MappingProxyType({})
_bound: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_fields", default=_EMPTY
)
# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


def bind(**fields: str | None) -> None:
    """Attach fields to every line logged from this task and the tasks it starts."""
    current = dict(_bound.get())
    current.update({k: v for k, v in fields.items() if v})
    _bound.set(current)


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """`bind()` for a block; the previous fields come back after it."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _bound.reset(token)


def current() -> Mapping[str, str]:
    """The fields bound in this context (for tests and for passing across threads)."""
    return _bound.get()


class CallFields(logging.Filter):
    """Copies the bound call fields and the current trace id onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _bound.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        if not hasattr(record, "trace_id"):
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The familiar one-line text, with the call fields appended when there are any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        tags = " ".join(
            f"{name}={getattr(record, name)}" for name in CALL_FIELDS if hasattr(record, name)
        )
        return f"{text} [{tags}]" if tags else text


def configure(fmt: LogFormat = "text", level: int = logging.INFO) -> None:
    """Set up the root logger for a process: one stderr handler with the call fields."""
    handler = logging.StreamHandler()
    handler.addFilter(CallFields())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
