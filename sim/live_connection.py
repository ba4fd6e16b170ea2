"""One client connection of the Gemini Live stand-in: what it sent, what it was sent.

Kept apart from the server (`sim.gemini_live_server`) so the connection's state (the setup it
sent, audio counters, VAD state, the agent's inbox) reads as one record; the server owns the
socket and every behaviour. Also the small wire helpers both need: the SDK's mixed key
casing, URL-safe base64, and log-friendly copies of messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from websockets.asyncio.server import ServerConnection

from sim.live_usage import UsageMeter


def either_case(obj: Mapping[str, Any], camel: str) -> Any:
    """`obj[camel]`, falling back to its snake_case spelling (the SDK sends both)."""
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower())


def duration_s(value: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)s\s*", value)
    return float(match.group(1)) if match else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class UserTurn:
    """The caller finished a turn: spoken audio (`audio_ms` of speech) or a text turn."""

    connection: int
    kind: Literal["audio", "text"]
    text: str = ""
    audio_ms: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class SayResult:
    """How much of a scripted model turn went out before it finished or was interrupted."""

    audio_bytes_sent: int
    interrupted: bool
    connection_closed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ToolResult:
    """The client answered the function call `id` (delivered to an agent's inbox).

    `scheduling` is how a NON_BLOCKING call's answer asks to be taken: `SILENT` (note it,
    say nothing), `WHEN_IDLE`, `INTERRUPT`, or `SCHEDULING_UNSPECIFIED`.
    """

    id: str
    name: str
    response: dict[str, Any]
    scheduling: str = "SCHEDULING_UNSPECIFIED"


@dataclasses.dataclass(frozen=True, slots=True)
class ToolsCancelled:
    """The server withdrew these function calls (`toolCallCancellation` after a barge-in)."""

    ids: tuple[str, ...]


ClientEvent = UserTurn | ToolResult | ToolsCancelled
FrameTap = Callable[[Literal["client", "server"], bytes], None]


@dataclasses.dataclass(eq=False)
class LiveConnection:
    """Everything one client connection sent and was sent, plus its private socket state.

    `setup` is the client's setup as the schema reads it (camelCase keys, enum names);
    `session_id` is the stand-in's own bookkeeping for resumption, never sent (the real
    `setupComplete` is empty); `usage` is the logical session's token meter (shared by a
    resumed connection); `frame_tap` sees every frame either way, as on the wire.
    """

    index: int
    path: str
    api_key: str | None
    setup: dict[str, Any] = dataclasses.field(default_factory=dict)
    session_id: str = ""
    resume_handle: str | None = None
    audio_bytes: int = 0
    audio_chunks: int = 0
    audio_mime_types: set[str] = dataclasses.field(default_factory=set)
    audio_stream_ends: int = 0
    texts: list[str] = dataclasses.field(default_factory=list)
    realtime_texts: list[str] = dataclasses.field(default_factory=list)
    tool_responses: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    issued_handles: list[str] = dataclasses.field(default_factory=list)
    log: list[tuple[str, str, Any]] = dataclasses.field(default_factory=list)
    ready: bool = False
    close_code: int | None = None
    closed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    ws: ServerConnection | None = dataclasses.field(default=None, repr=False)
    speaking: bool = dataclasses.field(default=False, repr=False)
    interrupted: bool = dataclasses.field(default=False, repr=False)
    speech_ms: float = dataclasses.field(default=0.0, repr=False)
    silence_ms: float = dataclasses.field(default=0.0, repr=False)
    # NON_BLOCKING calls of the model's current turn not answered yet: a barge-in cancels them.
    turn_calls: list[str] = dataclasses.field(default_factory=list, repr=False)
    cancel_tools_on_barge_in: bool = dataclasses.field(default=True, repr=False)
    usage: UsageMeter = dataclasses.field(default_factory=UsageMeter, repr=False)
    inbox: asyncio.Queue[ClientEvent] | None = dataclasses.field(default=None, repr=False)
    audio_tap: Callable[[bytes, int], None] | None = dataclasses.field(default=None, repr=False)
    frame_tap: FrameTap | None = dataclasses.field(default=None, repr=False)

    @property
    def model(self) -> str:
        return str(self.setup.get("model", ""))

    @property
    def tool_names(self) -> list[str]:
        names: list[str] = []
        for tool in self.setup.get("tools") or []:
            for decl in either_case(tool, "functionDeclarations") or []:
                names.append(str(decl.get("name", "")))
        return names

    @property
    def function_declarations(self) -> dict[str, dict[str, Any]]:
        return {
            str(decl.get("name", "")): decl
            for tool in self.setup.get("tools") or []
            for decl in either_case(tool, "functionDeclarations") or []
        }

    def blocks_on(self, tool: str) -> bool:
        """Whether the client declared `tool` BLOCKING: the model then waits for its answer.

        Unspecified counts as NON_BLOCKING, the default of the Live generation we target.
        """
        return self.function_declarations.get(tool, {}).get("behavior") == "BLOCKING"

    @property
    def system_instruction(self) -> str:
        content = either_case(self.setup, "systemInstruction") or {}
        return "".join(str(p.get("text", "")) for p in content.get("parts") or [])

    @property
    def input_transcription(self) -> bool:
        return either_case(self.setup, "inputAudioTranscription") is not None

    @property
    def output_transcription(self) -> bool:
        return either_case(self.setup, "outputAudioTranscription") is not None

    @property
    def resumption_requested(self) -> bool:
        return either_case(self.setup, "sessionResumption") is not None

    @property
    def is_open(self) -> bool:
        return self.ready and not self.closed.is_set()

    def kinds(self, direction: Literal["client", "server"]) -> list[str]:
        """The message kinds seen in one direction, in order (audio chunks included)."""
        return [kind for d, kind, _ in self.log if d == direction]

    async def send(self, message: dict[str, Any], *, binary: bool) -> None:
        assert self.ws is not None
        self.log.append(("server", next(iter(message)), _loggable(message)))
        data = json.dumps(message).encode()
        if self.frame_tap is not None:
            self.frame_tap("server", data)
        await self.ws.send(data if binary else data.decode())


def _loggable(message: Mapping[str, Any]) -> Any:
    """The message with base64 payloads replaced by their decoded length."""
    if isinstance(message, Mapping):
        out: dict[str, Any] = {}
        for key, value in message.items():
            if key == "data" and isinstance(value, str):
                out[key] = f"<{len(value) * 3 // 4} bytes>"
            else:
                out[key] = _loggable(value)
        return out
    if isinstance(message, list):
        return [_loggable(v) for v in message]
    return message
