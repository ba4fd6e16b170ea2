"""ask_user: the agent asks the customer mid-call; the answer must reach the call.

A question is stored (`ask_user_requests`), announced as an `ask_user` event (the SSE
"terminal" channel, always), and routed by the task's `ask_user_mode`:
- `stream`: the event, plus the customer's webhook if one is set — the contract tells
  stream agents to keep the webhook as a backup, and `stream` only exists to keep
  questions out of Telegram inboxes (the customer's chat and the fallback chat);
- `any`: the first configured of the customer's Telegram chat, then the customer's
  HTTPS webhook (signed; a synchronous answer in its response counts), and, if
  neither took it, TELEGRAM_CHAT_ID_FALLBACK.
The webhook gets the booking context with the question (brief, target phone, parsed
slots), since a backend answering it has nothing else to go on.

Answers from any channel go through `submit()`: one compare-and-set from `pending`,
so the first answer wins, a late or repeated one is `delivered=false`, and the winner
is queued for the media session through `sessions.publish` (a durable command, sent
again whenever the session re-attaches, until media acknowledges it). A question stays
`pending` while its call's session is attached or re-attaching after a core restart:
when media ends the session itself, `cancel_pending()` closes its questions, so
`delivered=true` means the answer is queued for a session that is still there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from common import metrics
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


@dataclasses.dataclass(frozen=True, slots=True)
class Question:
    """One stored question, as the event and the webhook describe it."""

    call_id: str
    request_id: str
    question: str
    options: list[str]
    timeout_sec: int
    expires_at: dt.datetime

    def event(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "question": self.question,
            "options": self.options,
            "timeout_sec": self.timeout_sec,
            "expires_at": self.expires_at.isoformat(),
            "answer_url": f"/calls/{self.call_id}/answer",
        }

    def webhook_payload(self, call: asyncpg.Record) -> dict[str, Any]:
        """The event plus the booking context the contract promises the webhook."""
        return {
            "type": "ask_user",
            "call_id": self.call_id,
            **self.event(),
            "brief": call["brief"],
            "target_phone": call["target_phone"],
            "parsed_slots": call["parsed_slots"] or {},
        }


class AskUser:
    def __init__(self, pool: asyncpg.Pool[Any], channels: Channels) -> None:
        self._pool = pool
        self._channels = channels

    async def record(
        self,
        call_id: str,
        request_id: str,
        question: str,
        options: list[str],
        timeout_sec: int,
        seq: int = 0,
    ) -> Callable[[], Awaitable[None]] | None:
        """Store and announce the question (in the order questions come); return the
        delivery to outside channels still to run (None for a replay: already done)."""
        question = question.strip()
        if not question or not request_id:
            raise CallagentError("INVALID_ARGUMENT_FIELD", "ask_user needs a question and an id")
        options = [o.strip() for o in options if o.strip()]
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.LOCK_CALL_AND_ROUTING, call_id)
            if row is None:
                raise not_found("call")
            if not await sessions.claim_report(conn, call_id, seq):
                return None
            expires_at = await conn.fetchval(
                sql.INSERT,
                request_id,
                call_id,
                question,
                options,
                float(timeout_sec),
            )
            asked = Question(call_id, request_id, question, options, timeout_sec, expires_at)
            await events.append(conn, call_id, "ask_user", asked.event(), locked=True)
        return functools.partial(self._route, asked, row)

    async def _route(self, asked: Question, row: asyncpg.Record) -> None:
        stream = row["ask_user_mode"] == "stream"  # never Telegram, webhook still
        channel = "terminal"
        if (
            not stream
            and row["telegram_chat_id"] is not None
            and await self._telegram(row["telegram_chat_id"], asked)
        ):
            channel = "telegram"
        elif row["ask_user_webhook_url"] and self._channels.webhook is not None:
            result = await self._channels.webhook.deliver(
                row["ask_user_webhook_url"],
                row["ask_user_webhook_secret"],
                asked.webhook_payload(row),
            )
            if result.delivered:
                channel = "webhook"
                if result.sync_answer:
                    await self.submit(
                        None,
                        asked.call_id,
                        result.sync_answer,
                        asked.request_id,
                        result.sync_mode or "voice",
                        via="webhook",
                    )
            else:
                log.warning("ask_user webhook not delivered", extra={"call_id": asked.call_id})
        fallback = self._channels.telegram_fallback_chat
        if channel == "terminal" and not stream and fallback is not None:
            if await self._telegram(fallback, asked):
                channel = "telegram_fallback"
        await self._pool.execute(sql.SET_CHANNEL, asked.request_id, channel)

    async def _telegram(self, chat_id: int, asked: Question) -> bool:
        bot = self._channels.telegram
        if bot is None:
            return False
        request_id = asked.request_id
        try:
            message_id = await bot.send_question(
                chat_id, asked.question, asked.options or None, request_id
            )
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
                row = await conn.fetchrow(
                    sql.ANSWER,
                    call_id,
                    request_id or None,
                    answer,
                    mode,
                    via,
                )
                if row is not None:
                    taken = row["request_id"]
                    metrics.ASK_USER_LATENCY.observe(row["waited_sec"])
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

    async def cancel_pending(self, call_id: str) -> list[str]:
        """The call's media session ended: close its pending questions (nobody is left
        to hear an answer) and announce each as not delivered. Returns their ids."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.LOCK_CALL, call_id)
            closed = [r["request_id"] for r in await conn.fetch(sql.CANCEL_PENDING, call_id)]
            for request_id in closed:
                await events.append(
                    conn,
                    call_id,
                    "answer",
                    {"request_id": request_id, "delivered": False, "cancelled": True},
                    locked=True,
                )
        return closed

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

    async def pending_of(self, call_id: str) -> list[tuple[str, float]]:
        """The call's open questions and the seconds each has left, oldest first."""
        rows = await self._pool.fetch(sql.PENDING_OF_CALL, call_id)
        return [(r["request_id"], r["left_sec"]) for r in rows]

    async def answer_of(self, request_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._pool.fetchrow(sql.ANSWER_OF, request_id)
        return row
