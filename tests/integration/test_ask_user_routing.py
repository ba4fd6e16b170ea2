"""ask_user as the contract describes it: `stream` mode keeps the webhook (and only the
webhook), the webhook carries the booking context, options travel with the question,
and `delivered=true` only when a live media session took the answer."""

from __future__ import annotations

import datetime as dt
import pathlib

import httpx

from core import main as server
from core.app import api_keys
from gateway.app import create_app
from tests.conftest import (
    eventually,
    make_gateway_settings,
    make_settings,
    new_customer,
    serve_asgi,
)
from tests.fakes.telegram import BOT_TOKEN, FakeTelegram
from tests.fakes.telephony import FakeTelephony
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.integration.test_ask_user import ask, pending, session, start


async def test_stream_mode_keeps_the_webhook_with_the_booking_context(
    db_dsn: str, tmp_path: pathlib.Path
) -> None:
    chat, fallback = 1001, 2002
    async with FakeWebhookReceiver() as receiver, FakeTelegram(chats={chat, fallback}) as tg:
        ca = tmp_path / "ca.pem"
        receiver.ca.cert_pem.write_to_path(str(ca))
        settings = make_settings(
            webhook_allowed_hosts=["127.0.0.1"],
            webhook_ca_file=ca,
            webhook_backoff_base_sec=0.01,
            telegram_bot_token=BOT_TOKEN,
            telegram_api_base_url=tg.base_url,
            telegram_chat_id_fallback=fallback,
            telegram_poll_timeout_sec=1,
        )
        core = await server.start(settings, dsn=db_dsn, port=0, telephony=FakeTelephony())
        try:
            gw = make_gateway_settings(core.port)
            async with serve_asgi(create_app(gw)) as url, httpx.AsyncClient(base_url=url) as http:
                customer = await new_customer(core.pool)
                headers = {"X-API-Key": customer.api_key}
                configured = await http.put(
                    "/users/me/webhook", json={"url": receiver.url}, headers=headers
                )
                assert configured.status_code == 200, configured.text
                receiver.secret = configured.json()["secret"]
            await core.pool.execute(
                "UPDATE customers SET telegram_chat_id = $2 WHERE customer_id = $1",
                customer.customer_id,
                chat,
            )
            call_id = await start(
                core,
                customer,
                ask_user_mode="stream",
                kind="restaurant_booking",
                parsed_slots={"guests": 2},
            )
            async with session(core, call_id) as media:
                await media.next()
                media.send(**ask("s1", "They offer 20:30 — OK?"))

                async def routed() -> bool:
                    channel = await core.pool.fetchval(
                        "SELECT channel FROM ask_user_requests WHERE request_id = 's1'"
                    )
                    return channel is not None

                await eventually(routed)
                channel = await core.pool.fetchval(
                    "SELECT channel FROM ask_user_requests WHERE request_id = 's1'"
                )
                assert channel == "webhook"
                assert tg.sent_messages == []  # neither the customer's chat nor the fallback
        finally:
            await core.stop(grace=0)
    assert len(receiver.requests) == 1 and receiver.requests[0].signature_ok
    body = receiver.requests[0].payload
    assert body["call_id"] == call_id and body["request_id"] == "s1"
    assert body["question"] == "They offer 20:30 — OK?"
    assert body["options"] == ["yes", "no"]
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert expires.tzinfo is not None and expires > dt.datetime.now(dt.UTC)
    assert body["brief"] == "Table for 2 at 19:00 under Anna"
    assert body["target_phone"] == "+15550100"
    assert body["parsed_slots"] == {"guests": 2}


async def test_options_and_expiry_reach_the_event(
    core: server.Core, customer: api_keys.CreatedKey
) -> None:
    call_id = await start(core, customer, ask_user_mode="stream")
    async with session(core, call_id) as media:
        await media.next()
        media.send(**ask("o1", "20:30 or 21:00?"))
        await eventually(lambda: pending(core, "o1"))
    event = await core.pool.fetchval(
        "SELECT payload FROM call_events WHERE call_id = $1 AND type = 'ask_user'", call_id
    )
    assert event["options"] == ["yes", "no"]
    assert dt.datetime.fromisoformat(event["expires_at"]) > dt.datetime.now(dt.UTC)


async def test_an_answer_nobody_waits_for_is_not_delivered(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call_id = await start(core, customer, ask_user_mode="stream")
    headers = {"X-API-Key": customer.api_key}
    async with session(core, call_id) as media:
        await media.next()
        media.send(**ask("gone", "Take 20:30?"))
        await eventually(lambda: pending(core, "gone"))
    # The media session ended (the call is not terminal yet): nobody hears an answer.

    async def closed() -> bool:
        return not await pending(core, "gone")

    await eventually(closed)
    reply = await http.post(
        f"/calls/{call_id}/answer", json={"answer": "yes", "request_id": "gone"}, headers=headers
    )
    assert reply.status_code == 200 and reply.json() == {"delivered": False}
    fifo = await http.post(f"/calls/{call_id}/answer", json={"answer": "yes"}, headers=headers)
    assert fifo.json() == {"delivered": False}
    answers = await core.pool.fetch(
        "SELECT payload FROM call_events WHERE call_id = $1 AND type = 'answer' ORDER BY event_id",
        call_id,
    )
    assert answers[0]["payload"] == {"request_id": "gone", "delivered": False, "cancelled": True}
    assert all(not a["payload"]["delivered"] for a in answers)
