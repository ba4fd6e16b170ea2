"""The post-call classifier on Gemini: one structured-output `generateContent` per claim.

google-genai is the library (the one media already uses for Gemini Live): it speaks the
REST wire format (`POST {base}/v1beta/models/{model}:generateContent`, the key in
`x-goog-api-key`), turns the response schema below into `generationConfig.responseSchema`,
and `base_url` points it at the simulated world's stand-in unchanged. The answer is bounded
by `timeout_s` end to end, and every way it can fail (timeout, HTTP status, transport,
blocked or empty answer, JSON that is not the schema's shape) becomes one
`OutcomeModelError`, whose message is safe to log: neither the key nor the transcript is
ever in it. The caller falls back to the rules.

The SDK is handed our own `httpx.AsyncClient`, so it never picks aiohttp, and its retries
stay off: a second attempt would only eat the same deadline.
"""

from __future__ import annotations

import asyncio
import json

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from common.errors import ProviderError
from core.domain.bookings import OUTCOMES
from core.domain.outcome_analysis import Reading

_TEXT = types.Schema(type=types.Type.STRING, nullable=True)
RESPONSE_SCHEMA = types.Schema(
    type=types.Type.OBJECT,
    properties={
        "outcome_type": types.Schema(type=types.Type.STRING, enum=list(OUTCOMES)),
        "date_time": _TEXT,
        "guests": types.Schema(type=types.Type.INTEGER, nullable=True),
        "holder_name": _TEXT,
        "venue_name": _TEXT,
        "refusal_reason": _TEXT,
        "confidence": types.Schema(type=types.Type.NUMBER, minimum=0.0, maximum=1.0),
        "contradicts_agent": types.Schema(type=types.Type.BOOLEAN),
    },
    required=["outcome_type", "confidence", "contradicts_agent"],
    property_ordering=[
        "outcome_type",
        "date_time",
        "guests",
        "holder_name",
        "venue_name",
        "refusal_reason",
        "confidence",
        "contradicts_agent",
    ],
)


class OutcomeModelError(ProviderError):
    """The model gave no usable reading; `message` says why and is safe to log."""

    provider = "gemini_outcome"


class OutcomeModel:
    """Asks one Gemini model to read a call. Owns its HTTP client: `aclose()` it."""

    def __init__(
        self,
        api_key: str,
        *,
        model: str,
        base_url: str | None = None,
        timeout_s: float = 8.0,
    ) -> None:
        self.model = model
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(timeout=timeout_s)
        options = types.HttpOptions(
            base_url=base_url or None,
            httpx_async_client=self._http,
        )
        self._client = genai.Client(api_key=api_key, http_options=options)
        self._config = types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=RESPONSE_SCHEMA,
            temperature=0,
        )

    async def read(self, prompt: str) -> Reading:
        """The model's reading of the call described by `prompt`.

        Raises:
            OutcomeModelError: timeout, HTTP or transport failure, or an invalid answer.
        """
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.aio.models.generate_content(
                    model=self.model, contents=prompt, config=self._config
                )
        except TimeoutError:
            raise OutcomeModelError(
                f"no answer within {self._timeout_s:g} s", retryable=True
            ) from None
        except genai_errors.APIError as exc:
            retryable = exc.code in (408, 429) or exc.code >= 500
            raise OutcomeModelError(
                f"HTTP {exc.code} {exc.status or ''}".strip(), retryable=retryable
            ) from None
        except httpx.HTTPError as exc:
            raise OutcomeModelError(f"transport: {type(exc).__name__}", retryable=True) from None
        text = _answer_text(response)
        try:
            return Reading.from_json(json.loads(text))
        except ValueError as exc:  # JSONDecodeError is a ValueError
            problem = "not JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise OutcomeModelError(f"invalid answer: {problem}", retryable=False) from None

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()


def _answer_text(response: types.GenerateContentResponse) -> str:
    """The first candidate's text, or why there is none (blocked, cut off, empty)."""
    candidate = response.candidates[0] if response.candidates else None
    if candidate is None:
        blocked = response.prompt_feedback.block_reason if response.prompt_feedback else None
        raise OutcomeModelError(f"no candidate (blocked: {blocked})", retryable=False)
    finish = candidate.finish_reason
    if finish is not None and finish != types.FinishReason.STOP:
        raise OutcomeModelError(f"answer ended with {finish.value}", retryable=False)
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(part.text for part in parts if part.text and not part.thought)
    if not text:
        raise OutcomeModelError("empty answer", retryable=False)
    return text
