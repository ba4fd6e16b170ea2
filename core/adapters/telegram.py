"""The Telegram Bot API adapter that asks a customer's chat the agent's ask_user questions.

A question goes out with `sendMessage`, its options as one inline-keyboard button per row
whose `callback_data` is `"<request_id>:<index>"`, so a button press names its request by
itself. A typed answer is a reply to the question message, so it is matched by the
question's `message_id` (which `send_question` returns and the caller stores with the
request). Answers arrive by long-polling `getUpdates`; button presses are acknowledged
with `answerCallbackQuery` so the customer's client stops its spinner. The adapter keeps
no state of its own: the caller keeps the update offset and the message_id → request map,
so any replica can poll. Telegram allows one `getUpdates` caller per bot at a time (409
otherwise), so exactly one poller must run.

The bot token is part of every request path (`/bot<token>/method`). It never reaches a log
line: httpx logs each request URL at INFO, so a filter on the "httpx" logger masks the
token, and transport errors are raised `from None` because their request carries the URL.
Bot API failures (`{"ok": false, "error_code", "description"}`) and transport failures
become `TelegramError(retryable)`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from common.errors import ProviderError

logger = logging.getLogger(__name__)

TELEGRAM_API_BASE = "https://api.telegram.org"
MAX_TEXT_CHARS = 4096
MAX_CALLBACK_DATA_BYTES = 64
_TOKEN_IN_PATH = re.compile(r"/bot[^/]*:[^/]*")


class TelegramError(ProviderError):
    """The Bot API refused a request, or it could not be made (a `ProviderError`).

    Attributes:
        message: a human-readable reason (never contains the token).
        retryable: True when repeating the request is safe and may succeed.
        error_code: the Bot API's `error_code` (equal to the HTTP status), when it answered.
        retry_after_sec: the Bot API's flood-control wait (`parameters.retry_after`).
        migrate_to_chat_id: the new id of a group that became a supergroup.
    """

    provider = "telegram"

    def __init__(
        self,
        message: str,
        retryable: bool,
        *,
        error_code: int | None = None,
        retry_after_sec: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.error_code = error_code
        self.retry_after_sec = retry_after_sec
        self.migrate_to_chat_id = migrate_to_chat_id

    def __repr__(self) -> str:
        return (
            f"TelegramError({self.message!r}, retryable={self.retryable}, "
            f"error_code={self.error_code})"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class TelegramAnswer:
    """One answer from the chat.

    `question_message_id` is the question it answers (the replied-to message, or the
    message whose button was pressed); callers must also match `chat_id`, because message
    ids are only unique within a chat. `request_id` and `option_index` are set for a button
    press (from its callback data), and `text` is then the button's label (empty if
    Telegram no longer shows the keyboard; `option_index` still names the option).
    """

    update_id: int
    chat_id: int
    question_message_id: int
    text: str
    request_id: str | None = None
    option_index: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TelegramPoll:
    """The answers in one `getUpdates` batch and the offset that confirms the whole batch
    (non-answer updates included, so they are not fetched again)."""

    answers: list[TelegramAnswer]
    next_offset: int | None


class _TokenRedactor(logging.Filter):
    """Masks `/bot<token>` in the request URLs httpx logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Only Bot API URLs are rewritten; other URL objects stay as they are, so other
        # redactors on the same logger (webhook deliveries) still recognise theirs.
        if isinstance(record.args, tuple) and any(_is_bot_url(a) for a in record.args):
            record.args = tuple(
                _TOKEN_IN_PATH.sub("/bot<redacted>", str(a)) if _is_bot_url(a) else a
                for a in record.args
            )
        return True


def _is_bot_url(arg: object) -> bool:
    return isinstance(arg, httpx.URL) and _TOKEN_IN_PATH.search(str(arg)) is not None


def _install_token_redactor() -> None:
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _TokenRedactor) for f in httpx_logger.filters):
        httpx_logger.addFilter(_TokenRedactor())


def callback_data(request_id: str, index: int) -> str:
    """The button payload for option `index` of request `request_id` (at most 64 bytes)."""
    data = f"{request_id}:{index}"
    if len(data.encode()) > MAX_CALLBACK_DATA_BYTES:
        raise ValueError("request_id is too long for Telegram callback data")
    return data


class TelegramBot:
    """One bot, over one owned `httpx.AsyncClient`; close with `aclose()`.

    `base_url` points at api.telegram.org or, in tests and the simulator, the loopback
    fake; `timeout_sec` bounds each request (a long poll gets its poll time on top).
    """

    def __init__(
        self,
        token: str | SecretStr,
        *,
        base_url: str = TELEGRAM_API_BASE,
        timeout_sec: float = 5.0,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        if not secret or "/" in secret:
            raise ValueError("a Telegram bot token is required")
        self._timeout_sec = timeout_sec
        _install_token_redactor()
        self._client = httpx.AsyncClient(
            base_url=f"{base_url.rstrip('/')}/bot{secret}/",
            timeout=httpx.Timeout(timeout_sec),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return "TelegramBot(token=<redacted>)"

    async def __aenter__(self) -> TelegramBot:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send_question(
        self,
        chat_id: int | str,
        text: str,
        options: Sequence[str] | None,
        request_id: str,
    ) -> int:
        """Post the question (with one button per option) and return its `message_id`.

        Raises:
            TelegramError: a timeout or dropped connection is not retryable, since the
                message may have been posted and a retry would post it twice.
        """
        if len(text) > MAX_TEXT_CHARS:
            text = text[: MAX_TEXT_CHARS - 1] + "…"
        params: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if options:
            params["reply_markup"] = {
                "inline_keyboard": [
                    [{"text": option, "callback_data": callback_data(request_id, index)}]
                    for index, option in enumerate(options)
                ]
            }
        result = await self._call("sendMessage", params, ambiguous_is_retryable=False)
        if not isinstance(result, dict) or not isinstance(result.get("message_id"), int):
            raise TelegramError("sendMessage returned no message_id", retryable=False)
        message_id: int = result["message_id"]
        logger.info("telegram question sent", extra={"request_id": request_id})
        return message_id

    async def poll_answers(self, offset: int | None, *, timeout_sec: int = 25) -> TelegramPoll:
        """Long-poll for up to `timeout_sec` and parse replies and button presses.

        Passing the previous poll's `next_offset` confirms that batch to Telegram. Button
        presses are acknowledged here; a failed acknowledgement is logged, not raised,
        since the answer itself has arrived.
        """
        params: dict[str, Any] = {
            "timeout": timeout_sec,
            "allowed_updates": ["message", "callback_query"],
        }
        if offset is not None:
            params["offset"] = offset
        updates = await self._call(
            "getUpdates",
            params,
            ambiguous_is_retryable=True,
            long_poll_sec=timeout_sec,
        )
        if not isinstance(updates, list):
            raise TelegramError("getUpdates returned no list", retryable=True)
        answers: list[TelegramAnswer] = []
        next_offset = offset
        for update in updates:
            if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                continue
            next_offset = max(next_offset or 0, update["update_id"] + 1)
            answer = _parse_update(update)
            if answer is not None:
                answers.append(answer)
            query = update.get("callback_query")
            if isinstance(query, dict) and isinstance(query.get("id"), str):
                await self._acknowledge(query["id"])
        return TelegramPoll(answers=answers, next_offset=next_offset)

    async def _acknowledge(self, callback_query_id: str) -> None:
        try:
            await self._call(
                "answerCallbackQuery",
                {"callback_query_id": callback_query_id},
                ambiguous_is_retryable=True,
            )
        except TelegramError as err:
            logger.warning(
                "telegram callback acknowledgement failed", extra={"error_code": err.error_code}
            )

    async def _call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        ambiguous_is_retryable: bool,
        long_poll_sec: int = 0,
    ) -> Any:
        """POST one Bot API method and return its `result`, mapping every failure once."""
        try:
            response = await self._client.post(
                method, json=params, timeout=httpx.Timeout(self._timeout_sec + long_poll_sec)
            )
        except httpx.ConnectError:
            raise TelegramError(f"telegram {method}: cannot connect", retryable=True) from None
        except httpx.TransportError as exc:
            raise TelegramError(
                f"telegram {method}: transport failed ({type(exc).__name__})",
                retryable=ambiguous_is_retryable,
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            status = response.status_code
            raise TelegramError(
                f"telegram {method}: HTTP {status} without a Bot API body",
                retryable=status == 429 or status >= 500,
                error_code=status,
            )
        if data.get("ok") is True:
            return data.get("result")
        raise _api_error(method, data, response.status_code)


def _api_error(method: str, data: dict[str, Any], status: int) -> TelegramError:
    code = data.get("error_code")
    error_code = code if isinstance(code, int) else status
    description = data.get("description")
    parameters = data.get("parameters")
    retry_after = migrate_to = None
    if isinstance(parameters, dict):
        if isinstance(parameters.get("retry_after"), int):
            retry_after = parameters["retry_after"]
        if isinstance(parameters.get("migrate_to_chat_id"), int):
            migrate_to = parameters["migrate_to_chat_id"]
    return TelegramError(
        f"telegram {method} failed: {description if isinstance(description, str) else status}",
        retryable=error_code == 429 or error_code >= 500,
        error_code=error_code,
        retry_after_sec=retry_after,
        migrate_to_chat_id=migrate_to,
    )


def _parse_update(update: dict[str, Any]) -> TelegramAnswer | None:
    """A reply to a message, or a press of one of our buttons; anything else is None."""
    update_id: int = update["update_id"]
    message = update.get("message")
    if isinstance(message, dict):
        replied = message.get("reply_to_message")
        text = message.get("text")
        chat_id = _chat_id(message)
        if isinstance(replied, dict) and isinstance(text, str) and chat_id is not None:
            question_id = replied.get("message_id")
            if isinstance(question_id, int):
                return TelegramAnswer(update_id, chat_id, question_id, text)
        return None
    query = update.get("callback_query")
    if not isinstance(query, dict):
        return None
    data, message = query.get("data"), query.get("message")
    if not isinstance(data, str) or not isinstance(message, dict):
        return None
    request_id, _, index_text = data.rpartition(":")
    chat_id = _chat_id(message)
    question_id = message.get("message_id")
    if not request_id or not index_text.isdigit() or chat_id is None:
        return None
    if not isinstance(question_id, int):
        return None
    label = _button_label(message, data)
    return TelegramAnswer(update_id, chat_id, question_id, label, request_id, int(index_text))


def _chat_id(message: dict[str, Any]) -> int | None:
    chat = message.get("chat")
    if isinstance(chat, dict) and isinstance(chat.get("id"), int):
        chat_id: int = chat["id"]
        return chat_id
    return None


def _button_label(message: dict[str, Any], data: str) -> str:
    """The label of the pressed button, read from the question's own keyboard; empty when
    Telegram sends the message without it (older than 48 h), so use `option_index`."""
    markup = message.get("reply_markup")
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                label = button.get("text")
                return label if isinstance(label, str) else ""
    return ""
