"""A loopback Deepgram that speaks the real `/v1/listen` wire protocol (live and batch).

The production `DeepgramEar` and `transcribe_recording` talk to this exactly as to
api.deepgram.com; only the base URLs differ. It cannot recognise speech, so transcripts are
scripted against the *audio clock*: bytes of μ-law received / 8000 = seconds. That keeps every
test deterministic however fast audio is pushed. Reused by `sim/` for scripted venues.

Live timeline for `script_utterance(text, at_audio_s)` with n words of `word_s` each
(start = at_audio_s, end = start + n * word_s), per session:
  audio >= start                        → SpeechStarted(timestamp=start)      (if vad_events)
  audio >= start + ceil(n/2) * word_s   → interim Results, first half words   (if interim_results)
  audio >= end + endpointing            → final Results, is_final + speech_final
  audio >= end + utterance_end_ms       → UtteranceEnd(last_word_end=end)     (if both params)
By default results come as the real service sends them (`sim.deepgram_windows`) instead: an
interim each time a word has been heard, finals cut into windows; `windows=None` keeps the tidy
timeline above (one interim and one final per utterance, `start` at its first word).
`Finalize` flushes a started utterance as a final with `from_finalize: true`; `CloseStream`
flushes, sends `Metadata` and closes 1000; `drop()` aborts the TCP connection (no close frame);
`stalled = True` keeps reading but never answers (results, Finalize, CloseStream) again.
The handshake is checked as Deepgram checks it (`sim.deepgram_rules`): a wrong key is refused
401, an unknown or malformed query parameter 400, and `connect_failures` refuses the next
handshakes with the statuses given (429, 503: an overloaded Deepgram), each with Deepgram's
JSON error body and `dg-error`/`dg-request-id` headers. Text frames must be exactly
`KeepAlive`, `Finalize` or `CloseStream`. Whatever real Deepgram would refuse is recorded in
`violations`, and leaving `async with` fails (`check()`) unless `strict=False`.
Wall time matters only for the idle timeout (1011 `NET-0001` after `idle_timeout_s` without a
message), measured on an injectable `clock`/`sleep` pair so tests can advance it by hand.

The simulated world passes a `TranscriptSource` instead of scripting: it names, per live
session, what the callee said and where on that session's audio clock (with real word
timings), and the words of a recording posted for batch transcription. The batch answer
(utterances split at pauses, the audio's duration) is shaped by `sim.deepgram_batch`.
`GET /v1/projects` lists the key's one project (401 `INVALID_AUTH` for a wrong key), which is
how `callagent doctor` checks a key without spending audio.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sim import deepgram_batch, deepgram_rules, deepgram_windows
from sim.deepgram_script import (
    MULAW_BYTES_PER_S,
    ListenSession,
    ScriptedUtterance,
    TranscriptSource,
)
from sim.deepgram_windows import Windows
from sim.http1 import read_head, write_json

__all__ = [
    "MODEL_INFO",
    "MODEL_UUID",
    "MULAW_BYTES_PER_S",
    "BatchRequest",
    "FakeDeepgram",
    "ListenSession",
    "ScriptedUtterance",
    "TranscriptSource",
]
logger = logging.getLogger(__name__)
MODEL_UUID = deepgram_batch.MODEL_UUID
MODEL_INFO = deepgram_batch.MODEL_INFO
PROJECT_ID = "5a1e2b3c-0000-4000-8000-00000000d0c7"


@dataclasses.dataclass(slots=True)
class BatchRequest:
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class FakeDeepgram:
    """Deepgram on 127.0.0.1: websocket `/v1/listen` on `ws_base`, batch POST (and the
    projects list) on `http_base`."""

    def __init__(
        self,
        api_key: str = "test-deepgram-key",
        *,
        word_s: float = 0.3,
        idle_timeout_s: float = 10.0,
        ws_port: int = 0,
        http_port: int = 0,
        source: TranscriptSource | None = None,
        keep_sessions: bool = True,
        windows: Windows | None = Windows(),
        strict: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.api_key = api_key
        # Wall time, only for the idle timeout (transcripts run on the audio clock); tests
        # pass a fake `clock`/`sleep` pair to advance it explicitly.
        self._clock = clock
        self._sleep = sleep
        self.source = source
        self.keep_sessions = keep_sessions  # False: forget closed sessions (long-running sim)
        self.windows = windows
        self._ports = (ws_port, http_port)
        self.word_s = word_s
        self.idle_timeout_s = idle_timeout_s
        self.utterances: list[ScriptedUtterance] = []
        self.batch_text = ""
        self.sessions: list[ListenSession] = []
        self.rejected_upgrades = 0
        self.stalled = False
        self.batch_requests: list[BatchRequest] = []
        # Statuses the next batch requests are answered with, one each (429, 500, 503…),
        # as Deepgram does when overloaded; the request after them is served normally.
        self.batch_failures: list[int] = []
        # Statuses the next live handshakes are refused with, one each (429, 503…).
        self.connect_failures: list[int] = []
        self.strict = strict
        # Anything a client sent that real Deepgram refuses; `check()` fails the test on it.
        self.violations: list[str] = []
        self._changed = asyncio.Event()
        self._ws_server: Server | None = None
        self._http_server: asyncio.Server | None = None
        self.ws_base = ""
        self.http_base = ""

    async def __aenter__(self) -> FakeDeepgram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.check()

    async def start(self) -> None:
        self._ws_server = await serve(
            self._handle_ws,
            "127.0.0.1",
            self._ports[0],
            process_request=self._check_upgrade,
            process_response=self._tag_response,
        )
        self._http_server = await asyncio.start_server(
            self._handle_http, "127.0.0.1", self._ports[1]
        )
        ws_port = self._ws_server.sockets[0].getsockname()[1]
        http_port = self._http_server.sockets[0].getsockname()[1]
        self.ws_base = f"ws://127.0.0.1:{ws_port}"
        self.http_base = f"http://127.0.0.1:{http_port}"

    async def aclose(self) -> None:
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        if self._http_server is not None:
            self._http_server.close()
            await self._http_server.wait_closed()

    # ---- scripting -------------------------------------------------------------------------

    def script_utterance(self, text: str, at_audio_s: float) -> ScriptedUtterance:
        utterance = ScriptedUtterance(text, at_audio_s, self.word_s)
        self.utterances.append(utterance)
        return utterance

    def script_batch(self, text: str) -> None:
        self.batch_text = text

    def drop(self) -> None:
        """Abort every open live connection without a close frame (a network drop)."""
        for session in self.sessions:
            if session.connection is not None and not session.closed:
                session.connection.transport.abort()

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    # ---- live ------------------------------------------------------------------------------

    def _check_upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        split = urllib.parse.urlsplit(request.path)
        if split.path != "/v1/listen":
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            self.rejected_upgrades += 1
            self._notify()
            return self._refuse(connection, 401, "Invalid credentials.")
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        if problems := deepgram_rules.query_problems(query):
            for problem in problems:
                self._violate(f"handshake: {problem}")
            self.rejected_upgrades += 1
            self._notify()
            return self._refuse(connection, 400, "; ".join(problems))
        if self.connect_failures:
            self.rejected_upgrades += 1
            self._notify()
            status = HTTPStatus(self.connect_failures.pop(0))
            return self._refuse(connection, status, status.phrase)
        return None

    @staticmethod
    def _refuse(connection: ServerConnection, status: int, message: str) -> Response:
        """A refused upgrade as Deepgram answers it: JSON body, `dg-error` header."""
        request_id = str(uuid.uuid4())
        body = deepgram_rules.error_body(status, message, request_id)
        response = connection.respond(HTTPStatus(status), body.decode())
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        response.headers["dg-error"] = message
        response.headers["dg-request-id"] = request_id
        return response

    @staticmethod
    def _tag_response(
        connection: ServerConnection, request: Request, response: Response
    ) -> Response:
        if "dg-request-id" not in response.headers:  # Deepgram tags every upgrade with one
            response.headers["dg-request-id"] = str(uuid.uuid4())
        return response

    def _violate(self, problem: str) -> None:
        logger.warning("deepgram protocol violation: %s", problem)
        self.violations.append(problem)
        if not self.keep_sessions:  # long-running: the log has them, keep only the newest
            del self.violations[:-100]

    def check(self) -> None:
        """Fail (AssertionError) if any client broke the protocol; `async with` calls it."""
        if self.strict and self.violations:
            raise AssertionError(f"deepgram protocol violations: {self.violations}")

    async def _handle_ws(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        split = urllib.parse.urlsplit(connection.request.path)
        session = ListenSession(
            query=urllib.parse.parse_qs(split.query),
            headers={k: v for k, v in connection.request.headers.raw_items()},
            connection=connection,
        )
        self.sessions.append(session)
        self._notify()
        session.last_message_s = self._clock()
        watchdog = asyncio.create_task(self._close_when_idle(connection, session))
        try:
            while True:
                message = await connection.recv()
                session.last_message_s = self._clock()
                if isinstance(message, bytes):
                    if not message:  # Deepgram takes an empty frame as the end of the stream
                        self._violate("an empty binary frame")
                    session.audio += message
                    if not self.stalled:
                        await self._advance(connection, session)
                    self._notify()
                    continue
                if problem := deepgram_rules.control_problem(message):
                    self._violate(problem)
                    session.controls.append("invalid")
                    self._notify()
                    continue
                kind = str(json.loads(message)["type"])
                session.controls.append(kind)
                self._notify()
                if self.stalled:
                    continue
                if kind == "Finalize":
                    await self._flush(connection, session, from_finalize=True)
                elif kind == "CloseStream":
                    await self._flush(connection, session, from_finalize=False)
                    await self._send(connection, session, self._metadata(session))
                    await connection.close(1000, "")
                    break
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
            session.closed = True
            session.close_code = connection.close_code
            if not self.keep_sessions:
                self.sessions.remove(session)
            self._notify()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def _close_when_idle(self, connection: ServerConnection, session: ListenSession) -> None:
        """Deepgram closes a stream that sent nothing (not even KeepAlive) for 10 s."""
        while (idle := self._clock() - session.last_message_s) < self.idle_timeout_s:
            await self._sleep(self.idle_timeout_s - idle)
        await connection.close(1011, "NET-0001")

    def _utterances(self, session: ListenSession) -> list[tuple[object, ScriptedUtterance]]:
        found = self.source.live(session) if self.source is not None else self.utterances
        return [(i if u.key is None else u.key, u) for i, u in enumerate(found)]

    async def _advance(self, connection: ServerConnection, session: ListenSession) -> None:
        params = session.params
        vad = params.get("vad_events") == "true"
        interim = params.get("interim_results") == "true"
        endpoint_s = _ms(params.get("endpointing"), default=10) / 1000
        utterance_end_s = _ms(params.get("utterance_end_ms"), default=0) / 1000
        now = session.audio_s
        utterances = self._utterances(session)
        if self.windows is not None:
            speech = [
                u.at_audio_s for k, u in utterances if "final" not in session.progress.get(k, ())
            ]
            for message in deepgram_windows.silence(
                self.windows, session.windows, min([now, *speech])
            ):
                await self._send(connection, session, message)
        for key, u in utterances:
            done = session.progress.setdefault(key, set())
            if now < u.at_audio_s or ("final" in done and "end" in done):
                continue
            if "started" not in done:
                done.add("started")
                if vad:
                    await self._send(
                        connection,
                        session,
                        {"type": "SpeechStarted", "channel": [0], "timestamp": u.at_audio_s},
                    )
            half = math.ceil(len(u.tokens) / 2)
            partial: dict[str, Any] | None = None
            if not interim or "final" in done:
                pass
            elif self.windows is not None:
                heard = [w for w in u.word_dicts() if w["end"] <= now]
                partial = deepgram_windows.interim(session.windows, key, heard)
            elif "interim" not in done and now >= u.word_end_s(half):
                done.add("interim")
                partial = self._results(u, half, final=False)
            if partial is not None:
                await self._send(connection, session, partial)
            if "final" not in done:
                for message in self._final_messages(session, key, u, now, endpoint_s):
                    await self._send(connection, session, message)
            wants_end = interim and utterance_end_s > 0
            if "final" in done and "end" not in done and now >= u.end_s + utterance_end_s:
                done.add("end")
                if wants_end:
                    await self._send(
                        connection,
                        session,
                        {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": u.end_s},
                    )

    def _final_messages(
        self,
        session: ListenSession,
        key: object,
        u: ScriptedUtterance,
        now: float,
        endpoint_s: float,
    ) -> list[dict[str, Any]]:
        if self.windows is None:
            due = now >= u.end_s + endpoint_s
            messages = [self._results(u, None, final=True)] if due else []
        else:
            messages, due = deepgram_windows.pieces(
                self.windows, session.windows, key, u.word_dicts(), now, endpoint_s
            )
        if due:
            session.progress[key].add("final")
        return messages

    async def _flush(
        self, connection: ServerConnection, session: ListenSession, *, from_finalize: bool
    ) -> None:
        for key, u in self._utterances(session):
            done = session.progress.get(key, set())
            if "started" in done and "final" not in done:
                done.add("final")
                message: dict[str, Any] | None = None
                if self.windows is None:
                    message = self._results(u, None, final=True, from_finalize=from_finalize)
                    message["speech_final"] = not from_finalize
                else:
                    words, now = u.word_dicts(), session.audio_s
                    message = deepgram_windows.flush(
                        session.windows, key, words, now, finalize=from_finalize
                    )
                if message is not None:
                    await self._send(connection, session, message)

    async def _send(
        self, connection: ServerConnection, session: ListenSession, message: dict[str, Any]
    ) -> None:
        if session.params.get("language") == "multi":
            message = deepgram_windows.multilingual(message)
        if problem := deepgram_rules.sent_problem(message):
            self._violate(problem)
        session.sent.append(message)
        await connection.send(json.dumps(message))

    def _results(
        self, u: ScriptedUtterance, count: int | None, *, final: bool, from_finalize: bool = False
    ) -> dict[str, Any]:
        """The tidy shape: one window from the first word, as if nothing else were heard."""
        words = u.word_dicts(count)
        end = words[-1]["end"] if words else u.at_audio_s
        return deepgram_windows.results(
            words, u.at_audio_s, end, final=final, speech_final=final, from_finalize=from_finalize
        )

    @staticmethod
    def _metadata(session: ListenSession) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": str(uuid.uuid4()),
            "sha256": hashlib.sha256(session.audio).hexdigest(),
            "created": "2024-01-01T00:00:00.000Z",
            "duration": session.audio_s,
            "channels": 1,  # no models/model_info: live Metadata lacks them (batch has them)
        }

    # ---- batch -----------------------------------------------------------------------------

    async def _handle_http(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            method, target, headers = await read_head(reader)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, payload = self._batch(method, target, headers, body)
            await write_json(writer, status, payload)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def _batch(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        split = urllib.parse.urlsplit(target)
        route = (method, split.path.rstrip("/"))
        if route not in (("POST", "/v1/listen"), ("GET", "/v1/projects")):
            return HTTPStatus.NOT_FOUND, {"err_code": "NOT_FOUND", "err_msg": "Not found."}
        if headers.get("authorization") != f"Token {self.api_key}":
            return HTTPStatus.UNAUTHORIZED, {
                "err_code": "INVALID_AUTH",
                "err_msg": "Invalid credentials.",
                "request_id": str(uuid.uuid4()),
            }
        if route[0] == "GET":  # the key's projects: `callagent doctor`'s key check
            return HTTPStatus.OK, {"projects": [{"project_id": PROJECT_ID, "name": "Simulated"}]}
        query = urllib.parse.parse_qs(split.query)
        if self.keep_sessions:
            self.batch_requests.append(BatchRequest(query, headers, body))
        self._notify()
        if self.batch_failures:
            failed = HTTPStatus(self.batch_failures.pop(0))
            return failed, {
                "err_code": "TOO_MANY_REQUESTS" if failed == 429 else "INTERNAL_SERVER_ERROR",
                "err_msg": failed.phrase,
                "request_id": str(uuid.uuid4()),
            }
        known = self.source.batch(body) if self.source is not None else None
        u = known or ScriptedUtterance(self.batch_text, 0.0, self.word_s)
        duration_s = u.end_s if u.audio_s is None else u.audio_s
        return HTTPStatus.OK, deepgram_batch.response(
            u.text, u.word_dicts(), body=body, query=query, duration_s=duration_s
        )


def _ms(value: str | None, *, default: int) -> int:
    if value is None or not value.isdigit():
        return default
    return int(value)
