"""ask_user: the agent asks the customer mid-call; the answer must reach the call.

A question is stored (`ask_user_requests`), announced as an `ask_user` event (the SSE
"terminal" channel, always), and routed by the task's `ask_user_mode`:
- `stream`: the event only — for CLI / agent clients that answer with POST /answer;
- `any`: the first configured of the customer's Telegram chat, then the customer's
  HTTPS webhook (signed; a synchronous answer in its response counts), and, if
  neither took it, TELEGRAM_CHAT_ID_FALLBACK.
Answers from any channel go through `submit()`: one compare-and-set from `pending`,
so the first answer wins, a late or repeated one is `delivered=false`, and the winner
is pushed to the media session through `sessions.publish`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from core.adapters.telegram import TelegramBot, TelegramError
from core.adapters.webhook_delivery import WebhookDelivery
from core.app import events, sessions
from core.domain import call_states as st
from core.domain.errors import CallagentError, not_found
from core.store.sql import ask_user as sql

log = logging.getLogger(__name__)

MODES = ("voice", "context")


@dataclasses.dataclass(frozen=True, slots=True)
class Channels:
    """The outbound channels this core can use (each optional)."""

    webhook: WebhookDelivery | None = None
    telegram: TelegramBot | None = None
    telegram_fallback_chat: int | None = None


class AskUser:
    def __init__(self, pool: asyncpg.Pool[Any], channels: Channels) -> None:
        self._pool = pool
        self._channels = channels

    async def ask(
        self,
        call_id: str,
        request_id: str,
        question: str,
        options: list[str],
        timeout_sec: int,
    ) -> None:
        """Store and announce the question, then deliver it per ask_user_mode."""
        delivery = await self.record(call_id, request_id, question, options, timeout_sec)
        if delivery is not None:
            await delivery()

    async def record(
        self,
        call_id: str,
        request_id: str,
        question: str,
        options: list[str],
        timeout_sec: int,
    ) -> Callable[[], Awaitable[None]] | None:
        """Store and announce the question (in the order questions come); return the
        delivery to outside channels still to run (None for ask_user_mode `stream`)."""
        question = question.strip()
        if not question or not request_id:
            raise CallagentError("INVALID_ARGUMENT_FIELD", "ask_user needs a question and an id")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.LOCK_CALL_AND_ROUTING, call_id)
            if row is None:
                raise not_found("call")
            await conn.execute(
                sql.INSERT,
                request_id,
                call_id,
                question,
                options,
                float(timeout_sec),
            )
            await events.append(
                conn,
                call_id,
                "ask_user",
                {
                    "request_id": request_id,
                    "question": question,
                    "options": options,
                    "timeout_sec": timeout_sec,
                    "answer_url": f"/calls/{call_id}/answer",
                },
                locked=True,
            )
        if row["ask_user_mode"] != "any":
            return None
        return functools.partial(
            self._route, call_id, request_id, question, options, timeout_sec, row
        )

    async def _route(
        self,
        call_id: str,
        request_id: str,
        question: str,
        options: list[str],
        timeout_sec: int,
        row: asyncpg.Record,
    ) -> None:
        channel = "terminal"
        if row["telegram_chat_id"] is not None and await self._telegram(
            row["telegram_chat_id"], request_id, question, options
        ):
            channel = "telegram"
        elif row["ask_user_webhook_url"] and self._channels.webhook is not None:
            result = await self._channels.webhook.deliver(
                row["ask_user_webhook_url"],
                row["ask_user_webhook_secret"],
                {
                    "type": "ask_user",
                    "call_id": call_id,
                    "request_id": request_id,
                    "question": question,
                    "options": options,
                    "timeout_sec": timeout_sec,
                    "answer_url": f"/calls/{call_id}/answer",
                },
            )
            if result.delivered:
                channel = "webhook"
                if result.sync_answer:
                    await self.submit(
                        None,
                        call_id,
                        result.sync_answer,
                        request_id,
                        result.sync_mode or "voice",
                        via="webhook",
                    )
            else:
                log.warning("ask_user webhook not delivered", extra={"call_id": call_id})
        if channel == "terminal" and self._channels.telegram_fallback_chat is not None:
            if await self._telegram(
                self._channels.telegram_fallback_chat, request_id, question, options
            ):
                channel = "telegram_fallback"
        await self._pool.execute(sql.SET_CHANNEL, request_id, channel)

    async def _telegram(
        self, chat_id: int, request_id: str, question: str, options: list[str]
    ) -> bool:
        bot = self._channels.telegram
        if bot is None:
            return False
        try:
            message_id = await bot.send_question(chat_id, question, options or None, request_id)
        except TelegramError as err:
            log.warning("telegram delivery failed", extra={"retryable": err.retryable})
            return False
        await self._pool.execute(
            sql.SET_TELEGRAM_MESSAGE,
            request_id,
            chat_id,
            message_id,
        )
        return True

    async def submit(
        self,
        customer_id: str | None,
        call_id: str,
        answer: str,
        request_id: str | None,
        mode: str,
        *,
        via: str = "api",
    ) -> bool:
        """Answer a pending question of the call; False when nothing could take it.

        With customer_id, the call must be that customer's (NOT_FOUND otherwise).
        """
        answer = answer.strip()
        if not answer:
            raise CallagentError("INVALID_ARGUMENT_FIELD", "answer must not be empty")
        if mode not in MODES:
            raise CallagentError("INVALID_ARGUMENT_FIELD", "mode must be voice or context")
        async with self._pool.acquire() as conn, conn.transaction():
            call = await conn.fetchrow(sql.LOCK_CALL, call_id)
            if call is None or (customer_id is not None and call["customer_id"] != customer_id):
                raise not_found("call")
            taken = None
            if call["status"] not in st.TERMINAL:
                taken = await conn.fetchval(
                    sql.ANSWER,
                    call_id,
                    request_id or None,
                    answer,
                    mode,
                    via,
                )
            await events.append(
                conn,
                call_id,
                "answer",
                {
                    "request_id": taken or request_id,
                    "mode": mode,
                    "delivered": taken is not None,
                    "via": via,
                },
                locked=True,
            )
            if taken is not None:
                await sessions.publish(
                    conn, sessions.Command(call_id=call_id, kind="answer", request_id=taken)
                )
        return taken is not None

    async def expire(self, request_id: str) -> bool:
        """Time a question out if still pending; True if this call did it."""
        async with self._pool.acquire() as conn, conn.transaction():
            call_id = await conn.fetchval(sql.EXPIRE, request_id)
            if call_id is None:
                return False
            await events.append(
                conn,
                call_id,
                "answer",
                {"request_id": request_id, "delivered": False, "timed_out": True},
            )
        return True

    async def answer_of(self, request_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._pool.fetchrow(sql.ANSWER_OF, request_id)
        return row
