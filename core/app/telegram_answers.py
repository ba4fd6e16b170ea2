"""Turns Telegram replies into ask_user answers. Exactly one poller runs per deployment
(Telegram answers a second `getUpdates` consumer with 409): whichever replica holds a
session-level advisory lock polls; if its connection dies another takes over.

A reply is matched to its question by (chat id, replied-to message id); a button press
carries the request id itself. Answers go through `AskUser.submit`, like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from core.adapters.telegram import TelegramAnswer, TelegramBot, TelegramError
from core.app.ask_user import AskUser
from core.domain.errors import CallagentError
from core.store import database
from core.store.sql import ask_user as sql
from core.store.sql import signals

log = logging.getLogger(__name__)

POLLER_LOCK_KEY = 0x7467706C  # "tgpl"


class TelegramAnswerPoller:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool[Any],
        bot: TelegramBot,
        asker: AskUser,
        *,
        poll_timeout_sec: int,
        retry_sec: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._pool = pool
        self._bot = bot
        self._ask = asker
        self._timeout = poll_timeout_sec
        self._retry = retry_sec

    async def run(self) -> None:
        while True:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await database.connect(self._dsn)
                # Polling is the point: the lock frees when its holder's session ends.
                while not await conn.fetchval(signals.TRY_LEADER_LOCK, POLLER_LOCK_KEY):  # noqa: ASYNC110
                    await asyncio.sleep(self._retry)
                await self._poll(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("telegram poller lost its lock connection", extra={"error": str(err)})
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(self._retry)

    async def _poll(self, lock_conn: asyncpg.Connection[Any]) -> None:
        offset: int | None = None
        while True:
            await lock_conn.execute(signals.PING)  # still the poller?
            try:
                batch = await self._bot.poll_answers(offset, timeout_sec=self._timeout)
            except TelegramError as err:
                log.warning("telegram poll failed", extra={"retryable": err.retryable})
                await asyncio.sleep(err.retry_after_sec or self._retry)
                continue
            for answer in batch.answers:
                await self.apply(answer)
            offset = batch.next_offset if batch.next_offset is not None else offset

    async def apply(self, answer: TelegramAnswer) -> bool:
        """Submit one Telegram answer; False if it matches no question we asked there."""
        row = await self._pool.fetchrow(
            sql.BY_TELEGRAM_MESSAGE,
            answer.chat_id,
            answer.request_id,
            answer.question_message_id,
        )
        if row is None:
            return False
        text = answer.text
        options = row["options"] or []
        if answer.option_index is not None and 0 <= answer.option_index < len(options):
            text = options[answer.option_index]
        if not text.strip():
            return False
        try:
            return await self._ask.submit(
                None, row["call_id"], text, row["request_id"], "voice", via="telegram"
            )
        except CallagentError as err:
            log.warning("telegram answer refused", extra={"reason": err.reason})
            return False
