"""What `callagent call` shows, built from events alone, so it is tested without a
terminal: the SSE line parser, API error bodies, the transcript/question view state and
the final card's rows. rich is imported only where a renderable is made.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

INT_RE = re.compile(r"[+-]?\d+")
WORDS_RE = re.compile(r"\w+")


class AskMode(enum.StrEnum):
    stream = "stream"
    any = "any"


# ---- wire: errors and SSE ------------------------------------------------------------------


class ApiError(Exception):
    """A non-2xx reply, reduced to the contract's `code` and a readable message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def api_error(status: int, body: Any) -> ApiError:
    """Read both error shapes: `{"detail": {"code", "message", ...}}` and FastAPI's 422 list."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        extra = [f"{k}={v}" for k, v in detail.items() if k not in ("code", "message") and v]
        message = " ".join([str(detail.get("message") or ""), *extra]).strip()
        return ApiError(status, str(detail.get("code") or f"HTTP_{status}"), message)
    if isinstance(detail, list):
        problems = []
        for item in detail:
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            problems.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg")))
        return ApiError(status, "VALIDATION_ERROR", "; ".join(problems))
    text = detail if isinstance(detail, str) else (body if isinstance(body, str) else "")
    return ApiError(status, f"HTTP_{status}", text or "request failed")


@dataclasses.dataclass(frozen=True, slots=True)
class SseMessage:
    id: str | None
    event: str
    data: str

    def as_dict(self) -> dict[str, Any]:
        """`{"id", "event", "data"}` with a numeric id as int and the data as parsed JSON."""
        try:
            data: Any = json.loads(self.data)
        except ValueError:
            data = self.data
        ident: Any = int(self.id) if self.id is not None and self.id.isdigit() else self.id
        return {"id": ident, "event": self.event, "data": data}


class SseParser:
    """SSE lines → messages, by the WHATWG rules the gateway relies on: `:` lines are
    comments (heartbeats), `data:` lines join with newlines, a blank line dispatches, and the
    last `id:` is kept as the resume point for `Last-Event-ID`."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.comments = 0
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SseMessage | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            message = SseMessage(self.last_id, self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return message
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


# ---- the pure view -------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Question:
    request_id: str
    text: str
    options: list[str]
    timeout_sec: int


@dataclasses.dataclass(frozen=True, slots=True)
class LogLine:
    """One line worth keeping in the scrollback: kind is agent, callee, status, decision,
    question, answer, signal, outcome, recording or error."""

    kind: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Said:
    speaker: str
    text: str
    source: str


def _norm(text: str) -> str:
    return " ".join(WORDS_RE.findall(text.lower()))


def parse_answer(typed: str, question: Question) -> tuple[str, str] | None:
    """What the person typed → (answer, mode); `/context …` is a silent hint, a number picks
    one of the question's options."""
    typed = typed.strip()
    if typed.startswith("/context"):
        hint = typed.removeprefix("/context").strip()
        return (hint, "context") if hint else None
    if typed.isdigit() and 1 <= int(typed) <= len(question.options):
        return question.options[int(typed) - 1], "voice"
    return (typed, "voice") if typed else None


class CallView:
    """Everything the terminal shows about one call, built from its SSE events alone.

    Final transcript lines are kept, an interim line replaces the speaker's previous one
    (core stores and sends finals only today). Each callee line comes from one source: the
    supervisor's ear, or the model's transcription once the ear is lost. Calls recorded
    before that carry both; for them the ear's lines win and a repeated line is dropped.
    """

    def __init__(self, call_id: str, phone: str, *, status: str = "", started: float = 0.0):
        self.call_id, self.phone, self.status, self.started = call_id, phone, status, started
        self.position: int | None = None
        self.transcript: list[Said] = []
        self.interim: dict[str, str] = {}
        self.decisions: list[str] = []
        self.questions: list[Question] = []
        self.signals: list[str] = []
        self.outcome: dict[str, Any] | None = None
        self.recording_url: str | None = None
        self.error: str | None = None
        self.note = ""
        self.typed = ""
        self.sent: dict[str, str] = {}  # request_id → what this terminal answered
        self._ear = False

    def apply(self, event: str, data: dict[str, Any]) -> list[LogLine]:
        """Fold one event into the view; return the lines to add to the scrollback."""
        if event == "status":
            self.status = str(data.get("status", ""))
            before = data.get("from")
            return [LogLine("status", f"{before} → {self.status}" if before else self.status)]
        if event == "transcript":
            return self._said(data)
        if event == "supervisor_decision":
            if data.get("kind") == "ear_lost":
                self._ear = False
            text = f"{data.get('kind', '?')}: {data.get('reason', '')} → {data.get('action', '')}"
            self.decisions.append(text)
            return [LogLine("decision", text)]
        if event == "ask_user":
            return self._asked(data)
        if event == "answer":
            return self._answered(data)
        if event == "signal":
            self.signals.append(str(data.get("name", "")))
            return [LogLine("signal", self.signals[-1])]
        if event == "outcome":
            self.outcome = data
            self.status = str(data.get("status") or self.status)
            self.questions.clear()
            kind, summary = data.get("outcome_type") or self.status, data.get("outcome_summary")
            return [LogLine("outcome", f"{kind} — {summary}" if summary else str(kind))]
        if event == "recording_ready":
            self.recording_url = data.get("recording_url")
            return [LogLine("recording", str(self.recording_url))]
        if event == "error":
            self.error = f"{data.get('code', 'ERROR')}: {data.get('message', '')}"
            return [LogLine("error", self.error)]
        return []

    def _said(self, data: dict[str, Any]) -> list[LogLine]:
        speaker = "agent" if data.get("speaker") == "agent" else "callee"
        text, source = str(data.get("text", "")).strip(), str(data.get("source", ""))
        if not data.get("final"):
            self.interim[speaker] = text
            return []
        self.interim.pop(speaker, None)
        if not text:
            return []
        if speaker == "callee":
            hidden = source == "gemini" and self._ear
            if source == "supervisor_stt":
                self._ear = True
            recent = [s for s in self.transcript[-6:] if s.speaker == "callee"]
            if hidden or any(s.source != source and _norm(s.text) == _norm(text) for s in recent):
                return []
        self.transcript.append(Said(speaker, text, source))
        return [LogLine(speaker, text)]

    def _asked(self, data: dict[str, Any]) -> list[LogLine]:
        request_id = str(data.get("request_id", ""))
        if any(q.request_id == request_id for q in self.questions):
            return []
        options = [str(o) for o in data.get("options") or ()]
        question = Question(
            request_id, str(data.get("question", "")), options, int(data.get("timeout_sec") or 0)
        )
        self.questions.append(question)
        return [LogLine("question", self.prompt_text(question))]

    def _answered(self, data: dict[str, Any]) -> list[LogLine]:
        request_id = data.get("request_id")
        self.questions = [q for q in self.questions if q.request_id != request_id]
        if data.get("timed_out"):
            self.note = "nobody answered in time; the agent carries on without it"
        elif data.get("delivered"):
            self.note = f"answer delivered ({data.get('mode', 'voice')}, via {data.get('via')})"
            if request_id in self.sent and data.get("via") == "api":
                self.note += f": {self.sent[request_id]}"
        else:
            self.note = "answer not delivered (already answered, timed out or call ended)"
        return [LogLine("answer", self.note)]

    @staticmethod
    def prompt_text(question: Question) -> str:
        picks = "  ".join(f"[{i}] {o}" for i, o in enumerate(question.options, 1))
        return f"{question.text}  {picks}".rstrip()

    def type_key(self, key: str) -> str | None:
        """One key of the answer being typed; returns the line when Enter submits it."""
        if key in ("\r", "\n"):
            line, self.typed = self.typed, ""
            return line
        if key in ("\x7f", "\b"):
            self.typed = self.typed[:-1]
        elif key == "\x15":  # Ctrl-U, as in a shell
            self.typed = ""
        elif key.isprintable():
            self.typed += key
        return None

    def render(self, now: float) -> RenderableType:
        """The live region: status, interim speech, the last decision and any question."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        elapsed = max(0, int(now - self.started))
        head = Text.assemble(
            ("● ", _STATUS_STYLE.get(self.status, "yellow")),
            (self.phone, "bold"),
            f"  {self.call_id}  ",
            (self.status or "starting", "bold"),
            f"  ({self.position} ahead)" if self.status == "queued" and self.position else "",
            (f"  {elapsed // 60}:{elapsed % 60:02d}", "dim"),
        )
        parts: list[RenderableType] = [head]
        for speaker, text in self.interim.items():
            parts.append(Text.assemble((f"{speaker:>6} ", _SPEAKER_STYLE[speaker]), (text, "dim")))
        if self.questions:
            q = self.questions[0]
            body = Text(q.text + "\n", style="bold")
            for i, option in enumerate(q.options, 1):
                body.append(f"  [{i}] {option}\n")
            body.append("> " + self.typed + "▌\n", style="bold cyan")
            hint = "Enter sends"
            hint += f" · 1–{len(q.options)} picks an option" if q.options else ""
            body.append(hint + " · /context <text> whispers a hint", style="dim")
            more = f" (+{len(self.questions) - 1} more)" if len(self.questions) > 1 else ""
            parts.append(Panel(body, title="the agent asks" + more, border_style="magenta"))
        elif self.note:
            parts.append(Text(self.note, style="dim"))
        return Group(*parts)


_STATUS_STYLE = {"in_progress": "green", "completed": "green", "failed": "red", "busy": "red"}
_SPEAKER_STYLE = {"agent": "cyan", "callee": "yellow"}
_LOG_STYLE = {
    **_SPEAKER_STYLE,
    "status": "dim",
    "decision": "magenta",
    "question": "bold magenta",
    "answer": "magenta",
    "signal": "green",
    "outcome": "bold green",
    "recording": "dim",
    "error": "bold red",
}


def styled(line: LogLine) -> RenderableType:
    from rich.text import Text

    label = {"question": "asks", "decision": "supervisor"}.get(line.kind, line.kind)
    return Text.assemble((f"{label:>10} ", _LOG_STYLE.get(line.kind, "")), line.text)


def money(cents: Any) -> str:
    return f"${int(cents or 0) / 100:.2f}"


def duration_text(seconds: Any) -> str:
    if seconds is None:
        return "—"
    total = round(float(seconds))
    return f"{total // 60}m {total % 60:02d}s" if total >= 60 else f"{total} s"


def card_rows(call: dict[str, Any], booking: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The final card's rows: the call's end, its charge and the booking it made."""
    outcome = call.get("outcome_type") or "—"
    if call.get("outcome_summary"):
        outcome += f" — {call['outcome_summary']}"
    rows = [
        ("status", str(call.get("status"))),
        ("outcome", outcome),
        ("duration", duration_text(call.get("duration_sec"))),
        ("charge", money(call.get("outcome_charge_cents"))),
    ]
    if call.get("reservation_signals"):
        rows.append(("signals", ", ".join(call["reservation_signals"])))
    if call.get("recording_url"):
        rows.append(("recording", str(call["recording_url"])))
    if booking is None:
        return [*rows, ("booking", "none")]
    rows.append(("booking", f"{booking.get('status')} ({booking.get('booking_id')})"))
    for label, key in (
        ("date", "booking_date"),
        ("guests", "guests"),
        ("name", "booking_holder_name"),
        ("venue", "venue_name"),
        ("phone", "contact_phone"),
        ("refusal", "refusal_reason"),
    ):
        value = booking.get(key)
        if value not in (None, ""):
            rows.append((label, booking_when(booking) if key == "booking_date" else str(value)))
    return rows


def booking_when(booking: dict[str, Any]) -> str:
    """The booking's time: the venue's wall time and zone, with UTC beside it when they differ."""
    utc = when_text(booking.get("booking_date"))
    local, zone = booking.get("booking_local_time"), booking.get("venue_timezone")
    if not local or not zone or zone == "UTC":
        return utc
    return f"{when_text(local)} {zone} ({utc} UTC)"


# ---- I/O: the API, the event stream, the keyboard ------------------------------------------


def when_text(value: str | None) -> str:
    """An API time, to the minute; instants in the local zone, naive booking times as is."""
    if not value:
        return ""
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M")
