"""A loopback Gemini REST API answering `models/{model}:generateContent` and `GET
models/{model}` like Google does.

Core's post-call classifier calls it through the real google-genai SDK with only the base URL
changed, so this speaks the real wire format: `POST /v1beta/models/{model}:generateContent`
with the key in `x-goog-api-key` (or `?key=`), a camelCase JSON body (`contents`,
`generationConfig` with `responseMimeType`/`responseSchema`), and an answer of
`candidates[0].content.parts[0].text` with `finishReason`, `usageMetadata`, `modelVersion` and
`responseId`. Requests are checked as Google checks them: an unknown field, missing
`contents` or a schema without JSON output is 400 `INVALID_ARGUMENT`; a missing key is 403
`PERMISSION_DENIED`; a wrong key is 400 `INVALID_ARGUMENT` with `ErrorInfo` reason
`API_KEY_INVALID` (Google answers a bad key with 400, not 401); anything but a known path and
model is 404 `NOT_FOUND`. Plain HTTP: the SDK's REST calls need no TLS (unlike Live's wss).

`GET models/{model}` (what `callagent doctor` asks through `client.aio.models.get`) answers
the model's `supportedGenerationMethods`: every `gemini-*` model exists; those named `*live*`
or `*native-audio*` support `bidiGenerateContent` (Live), the others `generateContent`.

It cannot think: an `AnswerSource` gives the answer for the prompt text (the simulated world
reads it from what was really said, `sim.outcome_truth`). Tests make it misbehave through
plain attributes: `delay_s` (a slow answer), `fail_status` (an error of that HTTP status),
`answer_text` (this text as the answer, e.g. not JSON); `requests` keeps what was received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import urllib.parse
import uuid
from typing import Any, Protocol

from sim.http1 import read_head, write_json

PATH_RE = re.compile(r"/(v1beta|v1|v1alpha)/models/([A-Za-z0-9][\w.\-]*):generateContent")
MODEL_RE = re.compile(r"/(v1beta|v1|v1alpha)/models/([A-Za-z0-9][\w.\-]*)")
LIVE_METHODS = ("bidiGenerateContent", "countTokens")
TEXT_METHODS = ("generateContent", "countTokens", "createCachedContent", "batchGenerateContent")
BAD_KEY_MESSAGE = "API key not valid. Please pass a valid API key."
_TOP_LEVEL = frozenset(
    {
        "contents",
        "generationConfig",
        "systemInstruction",
        "safetySettings",
        "tools",
        "toolConfig",
        "cachedContent",
    }
)
_MIME_TYPES = frozenset({"text/plain", "application/json", "text/x.enum"})
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MAX_BODY = 4 * 1024 * 1024


class AnswerSource(Protocol):
    """What the stand-in "model" answers: a JSON object for a structured request."""

    def answer(self, prompt: str, schema: dict[str, Any] | None) -> dict[str, Any]: ...


@dataclasses.dataclass(slots=True)
class GenerateRequest:
    """One accepted request, for assertions."""

    model: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        return _prompt_text(self.body)


class _Refused(Exception):
    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


class FakeGeminiRest:
    """generateContent on 127.0.0.1 (`base_url`); `async with` starts and stops it."""

    def __init__(
        self, api_key: str = "test-gemini-key", *, source: AnswerSource, port: int = 0
    ) -> None:
        self.api_key = api_key
        self.source = source
        self.delay_s = 0.0
        self.fail_status: int | None = None
        self.answer_text: str | None = None
        self.requests: list[GenerateRequest] = []
        self.keep_requests = True
        self.base_url = ""
        self._port = port
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()
        self._received = asyncio.Event()

    async def wait_for_request(self, count: int = 1, timeout_s: float = 10.0) -> None:
        """Until `count` requests have been accepted (tests; needs `keep_requests`)."""
        async with asyncio.timeout(timeout_s):
            while len(self.requests) < count:
                self._received.clear()
                await self._received.wait()

    async def __aenter__(self) -> FakeGeminiRest:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._port)
        self.base_url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()  # releases slow answers still waiting
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, headers = await read_head(reader)
            length = int(headers.get("content-length", "0"))
            try:
                if length > _MAX_BODY:
                    raise _Refused(400, "Request payload size exceeds the limit.")
                body = await reader.readexactly(length)
                status, payload = await self._answer(method, target, headers, body)
            except _Refused as refused:
                status, payload = refused.status, _error(refused)
            await write_json(writer, status, payload, "application/json; charset=UTF-8")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except ValueError:
            pass  # an unparsable request line: nothing sensible to answer
        finally:
            writer.close()

    async def _answer(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        split = urllib.parse.urlsplit(target)
        match = PATH_RE.fullmatch(split.path)
        lookup = MODEL_RE.fullmatch(split.path) if method == "GET" else None
        if lookup is not None:
            self._authenticate(headers, split.query)
            return 200, _model_json(lookup.group(1), lookup.group(2))
        if match is None or method != "POST":
            raise _Refused(404, "Method not found.")
        model = match.group(2)
        self._authenticate(headers, split.query)
        if not model.startswith("gemini-"):
            raise _Refused(
                404,
                f"models/{model} is not found for API version {match.group(1)}, or is not "
                "supported for generateContent.",
            )
        body = _checked_body(raw)
        if self.keep_requests:
            self.requests.append(GenerateRequest(model, headers, body))
            self._received.set()
        if self.delay_s > 0:
            try:
                async with asyncio.timeout(self.delay_s):
                    await self._closing.wait()
            except TimeoutError:
                pass
        if self.fail_status is not None:
            raise _Refused(self.fail_status, _failure_message(self.fail_status))
        config = body.get("generationConfig") or {}
        prompt = _prompt_text(body)
        if self.answer_text is not None:
            text = self.answer_text
        else:
            schema = config.get("responseSchema")
            answer = self.source.answer(prompt, schema if isinstance(schema, dict) else None)
            if config.get("responseMimeType") == "application/json":
                text = json.dumps(answer)
            else:
                text = "; ".join(f"{k}: {v}" for k, v in answer.items())
        prompt_tokens = max(1, len(prompt) // 4)
        answer_tokens = max(1, len(text) // 4)
        return 200, {
            "candidates": [
                {
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": answer_tokens,
                "totalTokenCount": prompt_tokens + answer_tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
            },
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:22],
        }

    def _authenticate(self, headers: dict[str, str], query: str) -> None:
        """Google's answers to a missing key (403) and a wrong one (400 API_KEY_INVALID)."""
        key = headers.get("x-goog-api-key") or urllib.parse.parse_qs(query).get("key", [""])[0]
        if not key:
            raise _Refused(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if key != self.api_key:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            raise _Refused(400, BAD_KEY_MESSAGE, [info])


def _checked_body(raw: bytes) -> dict[str, Any]:
    """The request body, refused with Google's INVALID_ARGUMENT wording where it is wrong."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise _Refused(400, "Invalid JSON payload received.") from None
    if not isinstance(body, dict):
        raise _Refused(400, "Invalid JSON payload received. Expected an object.")
    for name in body:
        if name not in _TOP_LEVEL:
            raise _Refused(
                400, f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
            )
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _Refused(400, "* GenerateContentRequest.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            raise _Refused(
                400,
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts "
                "must not be empty.\n",
            )
        if content.get("role") not in (None, "user", "model"):
            raise _Refused(400, "Please use a valid role: user, model.")
        for part in parts:
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise _Refused(400, "Invalid JSON payload received. Invalid part.")
    config = body.get("generationConfig", {})
    if not isinstance(config, dict):
        raise _Refused(400, "Invalid JSON payload received. generationConfig is not an object.")
    temperature = config.get("temperature", 1.0)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise _Refused(
            400, "* GenerateContentRequest.generation_config.temperature: must be in [0.0, 2.0]\n"
        )
    mime = config.get("responseMimeType", "text/plain")
    if mime not in _MIME_TYPES:
        raise _Refused(
            400,
            f"* GenerateContentRequest.generation_config.response_mime_type: "
            f"allowed mimetypes are {sorted(_MIME_TYPES)}, but got {mime}\n",
        )
    schema = config.get("responseSchema")
    if schema is not None and (not isinstance(schema, dict) or mime == "text/plain"):
        raise _Refused(
            400,
            "* GenerateContentRequest.generation_config.response_schema: "
            "only supported with a JSON response_mime_type\n",
        )
    return body


def _model_json(version: str, model: str) -> dict[str, Any]:
    """A `Model` resource, or Google's 404 for a model it does not serve."""
    if not model.startswith("gemini-"):
        raise _Refused(404, f"models/{model} is not found for API version {version}")
    live = "live" in model or "native-audio" in model
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model.replace("-", " ").title(),
        "description": "A simulated model.",
        "inputTokenLimit": 131072 if live else 1048576,
        "outputTokenLimit": 8192 if live else 65536,
        "supportedGenerationMethods": list(LIVE_METHODS if live else TEXT_METHODS),
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
    }


def _prompt_text(body: dict[str, Any]) -> str:
    texts = [
        str(part.get("text", ""))
        for content in body.get("contents", [])
        if isinstance(content, dict)
        for part in content.get("parts", [])
        if isinstance(part, dict)
    ]
    return "\n".join(texts)


def _failure_message(status: int) -> str:
    if status == 429:
        return "Resource has been exhausted (e.g. check quota)."
    if status == 503:
        return "The model is overloaded. Please try again later."
    return (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    )


def _error(refused: _Refused) -> dict[str, Any]:
    status = _STATUS_NAMES.get(refused.status, "UNKNOWN")
    error: dict[str, Any] = {"code": refused.status, "message": refused.message, "status": status}
    if refused.details:
        error["details"] = refused.details
    return {"error": error}
