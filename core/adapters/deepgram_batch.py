"""Deepgram's pre-recorded API (through deepgram-sdk): the bot-only call recording in,
word timings out, for the post-call merged transcript.

The live ear (media) hears the callee; this is the batch half the merge needs after the
call: each word the callee heard from our agent, timed on the recording's clock. Errors
say whether a retry can help (429 and 5xx and network trouble can; a refused key or a
rejected request cannot), so the merge job knows whether to back off or fall back.
"""

from __future__ import annotations

import dataclasses

import httpx
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.types.listen_v1response import ListenV1Response
from pydantic import SecretStr

from common.errors import ProviderError
from core.domain.transcript_merge import BatchWord

PRODUCTION_HTTP_BASE = DeepgramClientEnvironment.PRODUCTION.base


class TranscriptionError(ProviderError):
    """Batch transcription failed; `retryable` is False for auth and request errors."""

    provider = "deepgram_batch"


@dataclasses.dataclass(frozen=True, slots=True)
class DeepgramBatch:
    """Where Deepgram's REST API lives and how to authenticate (only the base URL differs
    in the simulated world)."""

    api_key: SecretStr
    http_base: str = PRODUCTION_HTTP_BASE
    model: str = "nova-3"
    timeout_sec: float = 120.0

    def _client(self, http: httpx.AsyncClient) -> AsyncDeepgramClient:
        env = DeepgramClientEnvironment(
            base=self.http_base,
            production=self.http_base,
            agent=self.http_base,
            agent_rest=self.http_base,
        )
        return AsyncDeepgramClient(
            api_key=self.api_key.get_secret_value(), environment=env, httpx_client=http
        )

    async def transcribe(self, audio: bytes, language: str) -> list[BatchWord]:
        """The recording's words with their times in seconds from its start.

        Raises:
            TranscriptionError: Deepgram refused or failed the request.
        """
        try:
            async with httpx.AsyncClient(timeout=self.timeout_sec) as http:
                response = await self._client(http).listen.v1.media.transcribe_file(
                    request=audio,
                    model=self.model,
                    language=language,
                    smart_format=True,
                    punctuate=True,
                    utterances=True,
                    # One attempt per call: the merge job retries with its own durable
                    # backoff and counts attempts (the SDK would retry 429/5xx twice more).
                    request_options={"max_retries": 0},
                )
        except ApiError as exc:
            status = exc.status_code or 0
            retryable = status == 429 or status >= 500
            raise TranscriptionError(
                f"deepgram batch transcription failed (HTTP {status})", retryable=retryable
            ) from None
        except httpx.HTTPError as exc:
            raise TranscriptionError(
                f"deepgram unreachable ({type(exc).__name__})", retryable=True
            ) from None
        if not isinstance(response, ListenV1Response):
            raise TranscriptionError("deepgram answered in callback mode", retryable=False)
        channels = response.results.channels
        alternatives = channels[0].alternatives if channels else None
        if not alternatives:
            return []
        words: list[BatchWord] = []
        for w in alternatives[0].words or []:
            if w.word is None or w.start is None or w.end is None:
                continue
            text = getattr(w, "punctuated_word", None) or w.word
            words.append(BatchWord(str(text), float(w.start), float(w.end), w.confidence or 0.0))
        return words
