"""A loopback fake of the Telegram Bot API: sendMessage, getUpdates, answerCallbackQuery.

It speaks the Bot API wire format so the production `core.adapters.telegram.TelegramBot` is driven
over real HTTP: `/bot<token>/<method>` paths (a wrong token answers 401 with the Bot API
error body), parameters as JSON, form or query string, `{"ok": true, "result": ...}`
answers, and `{"ok": false, "error_code", "description", "parameters"?}` errors with the
same HTTP status. `getUpdates` honours `offset` (confirming and dropping older updates),
`limit`, `allowed_updates` and the `timeout` long poll. Message ids count up per chat.

The customer side is driven by the test: `user_replies` and `user_presses` queue the
updates a real client would cause, and `fail_next` scripts one Bot API error.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import time
import uuid
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.twilio_rest import LoopbackServer

BOT_ID = 7000000001
BOT_TOKEN = f"{BOT_ID}:AAFakeTokenForLoopbackTests_0123456789"
USER = {"id": 424242, "is_bot": False, "first_name": "Dana", "language_code": "en"}


@dataclasses.dataclass(frozen=True, slots=True)
class SentMessage:
    """A message the bot posted, exactly as the fake stored it."""

    chat_id: int
    message_id: int
    text: str
    reply_markup: dict[str, Any] | None
    raw: dict[str, Any]


def _error(code: int, description: str, parameters: dict[str, int] | None = None) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=code)


def _ok(result: object) -> Response:
    return JSONResponse({"ok": True, "result": result})


class FakeTelegram:
    """One bot's Bot API on loopback. Use as `async with FakeTelegram(chats={...})`.

    `chats` are the chat ids the bot may post to (others answer "chat not found").
    `sent_messages`, `answered_callbacks` and `calls` (method names in order) are the
    recorded state tests assert on.
    """

    def __init__(self, *, token: str = BOT_TOKEN, chats: set[int] | None = None) -> None:
        self.token = token
        self.chats: set[int] = set(chats or {1001})
        self.sent_messages: list[SentMessage] = []
        self.answered_callbacks: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_message_id: dict[int, itertools.count[int]] = {}
        self._update_ids = itertools.count(500_000)
        self._updates: collections.deque[dict[str, Any]] = collections.deque()
        self._open_queries: set[str] = set()
        self._failures: dict[str, collections.deque[Response]] = {}
        self._wakeup = asyncio.Event()
        self._closing = False
        self.poll_waiting = asyncio.Event()  # set once a getUpdates call is long-polling
        app = Starlette(
            routes=[Route("/bot{token}/{method}", self._handle, methods=["GET", "POST"])]
        )
        self._server = LoopbackServer(app)
        self.base_url = self._server.base_url

    async def __aenter__(self) -> FakeTelegram:
        await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        self._publish()
        await self._server.__aexit__(*exc_info)

    # -- test hooks -------------------------------------------------------------------

    def fail_next(
        self, method: str, code: int, description: str, *, retry_after: int | None = None
    ) -> None:
        """Answer the next call of `method` with this Bot API error."""
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        self._failures.setdefault(method, collections.deque()).append(
            _error(code, description, parameters)
        )

    def user_replies(self, chat_id: int, reply_to_message_id: int, text: str) -> int:
        """The user replies to one of the bot's messages; returns the update id."""
        question = self._messages[(chat_id, reply_to_message_id)]
        message = {
            "message_id": next(self._message_ids(chat_id)),
            "from": USER,
            "chat": question["chat"],
            "date": int(time.time()),
            "reply_to_message": question,
            "text": text,
        }
        return self._queue("message", message)

    def user_says(self, chat_id: int, text: str) -> int:
        """The user writes a message that replies to nothing."""
        message = {
            "message_id": next(self._message_ids(chat_id)),
            "from": USER,
            "chat": {"id": chat_id, "first_name": USER["first_name"], "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        return self._queue("message", message)

    def user_presses(self, chat_id: int, message_id: int, callback_data: str) -> int:
        """The user presses an inline button of one of the bot's messages."""
        question = self._messages[(chat_id, message_id)]
        rows = (question.get("reply_markup") or {}).get("inline_keyboard", [])
        if not any(b.get("callback_data") == callback_data for row in rows for b in row):
            raise ValueError(f"message {message_id} has no button with that callback_data")
        query_id = str(uuid.uuid4().int >> 64)
        self._open_queries.add(query_id)
        query = {
            "id": query_id,
            "from": USER,
            "message": question,
            "chat_instance": str(-chat_id),
            "data": callback_data,
        }
        return self._queue("callback_query", query)

    def pending_update_ids(self) -> list[int]:
        """Updates not yet confirmed by an offset."""
        return [u["update_id"] for u in self._updates]

    # -- wire -------------------------------------------------------------------------

    def _message_ids(self, chat_id: int) -> itertools.count[int]:
        return self._next_message_id.setdefault(chat_id, itertools.count(1))

    def _queue(self, kind: str, payload: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, kind: payload})
        self._publish()
        return update_id

    def _publish(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    async def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            body = orjson.loads(await request.body() or b"{}")
            params.update(body)
        elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/")):
            form = await request.form()
            for key, value in form.items():
                text = str(value)
                # Form-encoded callers send objects (reply_markup, allowed_updates) as JSON.
                params[key] = orjson.loads(text) if text[:1] in "[{" else text
        return params

    async def _handle(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.path_params["method"]
        self.calls.append(method)
        failures = self._failures.get(method)
        if failures:
            return failures.popleft()
        params = await self._params(request)
        if method == "sendMessage":
            return self._send_message(params)
        if method == "getUpdates":
            return await self._get_updates(params)
        if method == "answerCallbackQuery":
            return self._answer_callback_query(params)
        return _error(404, "Not Found")

    def _send_message(self, params: dict[str, Any]) -> Response:
        try:
            chat_id = int(params.get("chat_id", ""))
        except ValueError:
            return _error(400, "Bad Request: chat not found")
        if chat_id not in self.chats:
            return _error(400, "Bad Request: chat not found")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        markup = params.get("reply_markup")
        if markup is not None:
            for row in markup.get("inline_keyboard", []):
                for button in row:
                    data = button.get("callback_data", "")
                    if not 1 <= len(data.encode()) <= 64:
                        return _error(400, "Bad Request: BUTTON_DATA_INVALID")
        message: dict[str, Any] = {
            "message_id": next(self._message_ids(chat_id)),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Callagent", "username": "ca_bot"},
            "chat": {"id": chat_id, "first_name": USER["first_name"], "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        if markup is not None:
            message["reply_markup"] = markup
        self._messages[(chat_id, message["message_id"])] = message
        self.sent_messages.append(
            SentMessage(chat_id, message["message_id"], text, markup, dict(message))
        )
        return _ok(message)

    async def _get_updates(self, params: dict[str, Any]) -> Response:
        offset = int(params.get("offset", 0))
        limit = max(1, min(100, int(params.get("limit", 100))))
        timeout = max(0.0, float(params.get("timeout", 0)))
        allowed = params.get("allowed_updates") or None
        if offset > 0:
            while self._updates and self._updates[0]["update_id"] < offset:
                self._updates.popleft()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            batch = [
                u
                for u in self._updates
                if u["update_id"] >= offset and (allowed is None or any(k in u for k in allowed))
            ][:limit]
            remaining = deadline - asyncio.get_running_loop().time()
            if batch or remaining <= 0 or self._closing:
                return _ok(batch)
            wakeup = self._wakeup
            self.poll_waiting.set()
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except TimeoutError:
                pass

    def _answer_callback_query(self, params: dict[str, Any]) -> Response:
        query_id = params.get("callback_query_id")
        if query_id not in self._open_queries:
            return _error(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self._open_queries.discard(query_id)
        self.answered_callbacks.append(params)
        return _ok(True)
