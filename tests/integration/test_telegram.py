"""TelegramBot over real HTTP against the loopback Bot API fake: questions with inline
keyboards, replies and button presses parsed into answers, long polling, Bot API errors,
and the token kept out of every log record."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from core.adapters.telegram import TelegramAnswer, TelegramBot, TelegramError
from tests.fakes.telegram import BOT_TOKEN, FakeTelegram

CHAT = 1001


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(chats={CHAT}) as fake:
        yield fake


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[TelegramBot]:
    async with TelegramBot(SecretStr(BOT_TOKEN), base_url=fake.base_url) as bot:
        yield bot


async def test_question_is_sent_with_one_button_per_option(
    fake: FakeTelegram, bot: TelegramBot
) -> None:
    message_id = await bot.send_question(CHAT, "Which time suits?", ["7pm", "8pm"], "req_1")

    (sent,) = fake.sent_messages
    assert (sent.chat_id, sent.message_id, sent.text) == (CHAT, message_id, "Which time suits?")
    assert sent.reply_markup == {
        "inline_keyboard": [
            [{"text": "7pm", "callback_data": "req_1:0"}],
            [{"text": "8pm", "callback_data": "req_1:1"}],
        ]
    }


async def test_open_question_has_no_keyboard(fake: FakeTelegram, bot: TelegramBot) -> None:
    await bot.send_question(CHAT, "What is the booking name?", None, "req_1")

    assert fake.sent_messages[0].reply_markup is None


async def test_text_reply_and_button_press_map_to_their_requests(
    fake: FakeTelegram, bot: TelegramBot
) -> None:
    open_id = await bot.send_question(CHAT, "Booking name?", None, "req_open")
    choice_id = await bot.send_question(CHAT, "Which time?", ["7pm", "8pm"], "req_choice")
    by_message = {open_id: "req_open", choice_id: "req_choice"}  # what the caller stores
    reply_update = fake.user_replies(CHAT, open_id, "Under Rivera")
    press_update = fake.user_presses(CHAT, choice_id, "req_choice:1")

    poll = await bot.poll_answers(None, timeout_sec=0)

    assert poll.answers == [
        TelegramAnswer(reply_update, CHAT, open_id, "Under Rivera"),
        TelegramAnswer(press_update, CHAT, choice_id, "8pm", "req_choice", 1),
    ]
    assert [by_message[a.question_message_id] for a in poll.answers] == ["req_open", "req_choice"]
    assert poll.next_offset == press_update + 1
    assert len(fake.answered_callbacks) == 1  # the press was acknowledged


async def test_next_offset_confirms_the_batch_including_non_answers(
    fake: FakeTelegram, bot: TelegramBot
) -> None:
    message_id = await bot.send_question(CHAT, "Name?", None, "req_1")
    chatter = fake.user_says(CHAT, "hello bot")
    first = await bot.poll_answers(None, timeout_sec=0)
    assert first.answers == [] and first.next_offset == chatter + 1

    reply = fake.user_replies(CHAT, message_id, "Rivera")
    second = await bot.poll_answers(first.next_offset, timeout_sec=0)

    assert [a.update_id for a in second.answers] == [reply]
    assert fake.pending_update_ids() == [reply]
    third = await bot.poll_answers(second.next_offset, timeout_sec=0)
    assert third.answers == [] and third.next_offset == second.next_offset
    assert fake.pending_update_ids() == []


async def test_long_poll_returns_when_the_answer_arrives(
    fake: FakeTelegram, bot: TelegramBot
) -> None:
    message_id = await bot.send_question(CHAT, "Name?", None, "req_1")
    async with asyncio.TaskGroup() as tg:
        polling = tg.create_task(bot.poll_answers(None, timeout_sec=30))
        await fake.poll_waiting.wait()
        fake.user_replies(CHAT, message_id, "Rivera")

    assert [a.text for a in polling.result().answers] == ["Rivera"]


async def test_failed_acknowledgement_keeps_the_answer(
    fake: FakeTelegram, bot: TelegramBot, caplog: pytest.LogCaptureFixture
) -> None:
    message_id = await bot.send_question(CHAT, "Time?", ["7pm"], "req_1")
    fake.user_presses(CHAT, message_id, "req_1:0")
    fake.fail_next("answerCallbackQuery", 400, "Bad Request: query is too old")

    poll = await bot.poll_answers(None, timeout_sec=0)

    assert [(a.request_id, a.option_index, a.text) for a in poll.answers] == [("req_1", 0, "7pm")]
    assert "telegram callback acknowledgement failed" in caplog.text


async def test_unknown_chat_is_a_final_error(bot: TelegramBot) -> None:
    with pytest.raises(TelegramError) as caught:
        await bot.send_question(999, "Time?", None, "req_1")

    assert not caught.value.retryable
    assert caught.value.error_code == 400
    assert "chat not found" in caught.value.message


async def test_flood_control_is_retryable_with_its_wait(
    fake: FakeTelegram, bot: TelegramBot
) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)

    with pytest.raises(TelegramError) as caught:
        await bot.send_question(CHAT, "Time?", None, "req_1")

    assert caught.value.retryable and caught.value.error_code == 429
    assert caught.value.retry_after_sec == 3
    assert fake.sent_messages == []


async def test_server_error_on_poll_is_retryable(fake: FakeTelegram, bot: TelegramBot) -> None:
    fake.fail_next("getUpdates", 502, "Bad Gateway")

    with pytest.raises(TelegramError) as caught:
        await bot.poll_answers(None, timeout_sec=0)

    assert caught.value.retryable and caught.value.error_code == 502


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    async with TelegramBot("123:not-the-token", base_url=fake.base_url) as bot:
        with pytest.raises(TelegramError) as caught:
            await bot.send_question(CHAT, "Time?", None, "req_1")

    assert caught.value.error_code == 401 and not caught.value.retryable
    assert fake.sent_messages == []


async def test_unreachable_api_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    async with TelegramBot(BOT_TOKEN, base_url=f"http://127.0.0.1:{port}") as bot:
        with pytest.raises(TelegramError) as caught:
            await bot.send_question(CHAT, "Time?", None, "req_1")

    assert caught.value.retryable and caught.value.error_code is None
    assert BOT_TOKEN not in str(caught.value) and caught.value.__cause__ is None


async def test_request_id_too_long_for_callback_data_is_refused(bot: TelegramBot) -> None:
    with pytest.raises(ValueError, match="callback data"):
        await bot.send_question(CHAT, "Time?", ["7pm"], "r" * 64)


async def test_token_stays_out_of_logs_and_repr(
    fake: FakeTelegram, bot: TelegramBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    message_id = await bot.send_question(CHAT, "Time?", ["7pm"], "req_1")
    fake.user_presses(CHAT, message_id, "req_1:0")
    await bot.poll_answers(None, timeout_sec=0)
    with pytest.raises(TelegramError):
        await bot.send_question(999, "Time?", None, "req_2")

    request_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("/bot<redacted>/sendMessage" in line for line in request_lines), request_lines
    secret_part = BOT_TOKEN.split(":")[1]
    for record in caplog.records:
        rendered = record.getMessage() + repr(record.__dict__)
        assert secret_part not in rendered, (record.name, rendered)
    assert secret_part not in repr(bot)
