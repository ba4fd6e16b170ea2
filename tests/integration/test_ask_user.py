"""ask_user end to end on the core side: a media session (real gRPC) asks, the customer
answers over REST / webhook, and the answer comes back down the session — across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
from callagent.v1 import media_pb2, media_pb2_grpc

from core import main as server
from core.app import api_keys
from core.domain.tasks import StartRequest
from gateway.app import create_app
from tests.conftest import (
    INTERNAL_TOKEN,
    eventually,
    make_gateway_settings,
    make_settings,
    new_customer,
    serve_asgi,
)
from tests.fakes.telegram import BOT_TOKEN, FakeTelegram
from tests.fakes.telephony import FakeTelephony
from tests.fakes.webhook_receiver import FakeWebhookReceiver


class MediaClient:
    """Plays the media process: one Session stream for one call."""

    def __init__(self, channel: grpc.aio.Channel, call_id: str) -> None:
        self.outbox: asyncio.Queue[media_pb2.SessionRequest | None] = asyncio.Queue()
        self.inbox: asyncio.Queue[media_pb2.SessionResponse] = asyncio.Queue()
        self._call = media_pb2_grpc.MediaSessionServiceStub(channel).Session(
            self._requests(), metadata=(("x-internal-token", INTERNAL_TOKEN),)
        )
        self.outbox.put_nowait(
            media_pb2.SessionRequest(
                attach=media_pb2.SessionAttach(call_id=call_id, pod="media-test")
            )
        )
        self._reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[media_pb2.SessionRequest]:
        while (item := await self.outbox.get()) is not None:
            yield item

    async def _read(self) -> None:
        async for response in self._call:
            await self.inbox.put(response)

    def send(self, **kind: Any) -> None:
        self.outbox.put_nowait(media_pb2.SessionRequest(**kind))

    def hung_up(self) -> None:
        """Report what media reports when the callee hangs up first (it always reports an
        outcome before it closes a session; a carrier `completed` waits for one)."""
        gone = "The other side hung up before the task was resolved."
        self.send(outcome=media_pb2.CallOutcome(outcome="failed", summary=gone))

    async def next(self, limit: float = 10) -> media_pb2.SessionResponse:
        async with asyncio.timeout(limit):
            return await self.inbox.get()

    def cancel(self) -> None:
        """Cancel the RPC outright (what media does when core is slow to finish)."""
        self._call.cancel()

    async def close(self) -> None:
        self.outbox.put_nowait(None)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def session(core: server.Core, call_id: str) -> AsyncIterator[MediaClient]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{core.port}") as channel:
        client = MediaClient(channel, call_id)
        try:
            yield client
        finally:
            await client.close()


async def start(core: server.Core, customer: api_keys.CreatedKey, **task: Any) -> str:
    request = StartRequest("+15550100", "Table for 2 at 19:00 under Anna", **task)
    return str((await core.calls.start(customer.customer_id, request)).call["call_id"])


def ask(request_id: str, question: str, timeout: int = 30) -> dict[str, Any]:
    return {
        "ask_user": media_pb2.AskUserRequest(
            request_id=request_id, question=question, options=["yes", "no"], timeout_sec=timeout
        )
    }


async def pending(core: server.Core, request_id: str) -> bool:
    status = await core.pool.fetchval(
        "SELECT status FROM ask_user_requests WHERE request_id = $1", request_id
    )
    return bool(status == "pending")


async def test_attach_returns_the_task_and_records_the_pod(
    core: server.Core, customer: api_keys.CreatedKey
) -> None:
    call_id = await start(
        core, customer, language="en", kind="restaurant_booking", parsed_slots={"guests": 2}
    )
    async with session(core, call_id) as media:
        task = (await media.next()).task
        assert task.call_id == call_id
        assert task.brief.startswith("Table for 2")
        assert task.kind == "restaurant_booking" and task.language == "en"
        assert task.parsed_slots["guests"] == 2
        assert task.ask_user_mode == "any"
    row = await core.pool.fetchrow(
        "SELECT owner_pod, call_sid FROM calls WHERE call_id = $1", call_id
    )
    assert row["owner_pod"] == "media-test"
    # The SID core dialed comes back with the task: media binds the stream to it.
    assert row["call_sid"] and task.call_sid == row["call_sid"]


async def test_stream_mode_answer_round_trip_and_fifo(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call_id = await start(core, customer, ask_user_mode="stream")
    headers = {"X-API-Key": customer.api_key}
    async with session(core, call_id) as media:
        await media.next()
        media.send(**ask("r1", "They only have 20:30 — take it?"))
        media.send(**ask("r2", "Window seat?"))
        await eventually(lambda: pending(core, "r2"))
        kinds = await core.pool.fetch(
            "SELECT type, payload FROM call_events WHERE call_id = $1 AND type = 'ask_user' "
            "ORDER BY event_id",
            call_id,
        )
        assert [k["payload"]["request_id"] for k in kinds] == ["r1", "r2"]
        assert kinds[0]["payload"]["answer_url"] == f"/calls/{call_id}/answer"

        # no request_id: the oldest pending question (FIFO)
        first = await http.post(
            f"/calls/{call_id}/answer", json={"answer": "yes, take 20:30"}, headers=headers
        )
        assert first.json() == {"delivered": True}
        got = (await media.next()).answer
        assert (got.request_id, got.answer, got.mode, got.timed_out) == (
            "r1",
            "yes, take 20:30",
            "voice",
            False,
        )
        # by request_id, silent guidance
        second = await http.post(
            f"/calls/{call_id}/answer",
            json={"answer": "window please", "request_id": "r2", "mode": "context"},
            headers=headers,
        )
        assert second.json() == {"delivered": True}
        got = (await media.next()).answer
        assert (got.request_id, got.mode) == ("r2", "context")
        # nothing pending any more
        again = await http.post(f"/calls/{call_id}/answer", json={"answer": "x"}, headers=headers)
        assert again.json() == {"delivered": False}


async def test_answer_rules(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call_id = await start(core, customer, ask_user_mode="stream")
    headers = {"X-API-Key": customer.api_key}
    other = await new_customer(core.pool)
    foreign = await http.post(
        f"/calls/{call_id}/answer", json={"answer": "x"}, headers={"X-API-Key": other.api_key}
    )
    missing = await http.post(
        "/calls/call_nope/answer", json={"answer": "x"}, headers={"X-API-Key": other.api_key}
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    bad = await http.post(
        f"/calls/{call_id}/answer", json={"answer": "x", "mode": "shout"}, headers=headers
    )
    assert bad.status_code == 422
    async with session(core, call_id) as media:
        await media.next()
        media.send(**ask("late", "Still there?", timeout=1))
        timed_out = (await media.next()).answer  # nobody answered within a second
        assert timed_out.request_id == "late" and timed_out.timed_out
        after = await http.post(
            f"/calls/{call_id}/answer",
            json={"answer": "yes", "request_id": "late"},
            headers=headers,
        )
        assert after.json() == {"delivered": False}
        media.send(**ask("ended", "One more?"))
        await eventually(lambda: pending(core, "ended"))
        await core.calls.transition(call_id, "failed")
        ended = await http.post(f"/calls/{call_id}/answer", json={"answer": "x"}, headers=headers)
        assert ended.json() == {"delivered": False}


async def test_answer_crosses_replicas(db_dsn: str) -> None:
    settings = make_settings()
    a = await server.start(settings, dsn=db_dsn, port=0, telephony=FakeTelephony())
    b = await server.start(settings, dsn=db_dsn, port=0, telephony=FakeTelephony())
    try:
        customer = await new_customer(a.pool)
        call_id = await start(a, customer, ask_user_mode="stream")
        gw = make_gateway_settings(b.port)
        async with (
            session(a, call_id) as media,
            serve_asgi(create_app(gw)) as url,
            httpx.AsyncClient(base_url=url) as http_b,
        ):
            await media.next()
            media.send(**ask("x1", "Take 20:30?"))
            await eventually(lambda: pending(a, "x1"))
            reply = await http_b.post(
                f"/calls/{call_id}/answer",
                json={"answer": "yes"},
                headers={"X-API-Key": customer.api_key},
            )
            assert reply.json() == {"delivered": True}
            assert (await media.next()).answer.answer == "yes"
            # and a cancel through replica b hangs the session up on replica a
            cancelled = await http_b.post(
                f"/calls/{call_id}/cancel", headers={"X-API-Key": customer.api_key}
            )
            assert cancelled.json() == {"cancelled": True}
            assert (await media.next()).hang_up.reason == "cancelled"
    finally:
        await a.stop(grace=0)
        await b.stop(grace=0)


async def test_webhook_gets_signed_question_and_sync_answer(
    db_dsn: str, tmp_path: pathlib.Path
) -> None:
    async with FakeWebhookReceiver() as receiver:
        ca = tmp_path / "ca.pem"
        receiver.ca.cert_pem.write_to_path(str(ca))
        settings = make_settings(
            webhook_allowed_hosts=["127.0.0.1"], webhook_ca_file=ca, webhook_backoff_base_sec=0.01
        )
        core = await server.start(settings, dsn=db_dsn, port=0, telephony=FakeTelephony())
        gw = make_gateway_settings(core.port)
        try:
            async with serve_asgi(create_app(gw)) as url, httpx.AsyncClient(base_url=url) as http:
                customer = await new_customer(core.pool)
                headers = {"X-API-Key": customer.api_key}
                configured = await http.put(
                    "/users/me/webhook", json={"url": receiver.url}, headers=headers
                )
                assert configured.status_code == 200, configured.text
                receiver.secret = configured.json()["secret"]
                receiver.answer("yes please", mode="voice")
                call_id = await start(core, customer)  # ask_user_mode any
                async with session(core, call_id) as media:
                    await media.next()
                    media.send(**ask("w1", "They offer 20:30 — OK?"))
                    got = (await media.next()).answer
                    assert (got.request_id, got.answer) == ("w1", "yes please")
            assert receiver.requests[0].signature_ok
            body = receiver.requests[0].payload
            assert body["request_id"] == "w1" and body["call_id"] == call_id
            assert body["answer_url"] == f"/calls/{call_id}/answer"
            row = await core.pool.fetchrow(
                "SELECT channel, answered_via FROM ask_user_requests WHERE request_id = 'w1'"
            )
            assert row is not None
            assert (row["channel"], row["answered_via"]) == ("webhook", "webhook")
        finally:
            await core.stop(grace=0)


async def test_session_reports_become_the_call_record(
    core: server.Core, http: httpx.AsyncClient, customer: api_keys.CreatedKey
) -> None:
    call_id = await start(core, customer, kind="restaurant_booking")
    async with session(core, call_id) as media:
        await media.next()
        media.send(
            transcript=media_pb2.TranscriptLine(
                speaker="callee",
                text="Luigi's, booked for Anna, see you!",
                final=True,
                offset_ms=120,
                source="supervisor_stt",
            )
        )
        media.send(transcript=media_pb2.TranscriptLine(speaker="agent", text="Hi", final=False))
        media.send(
            decision=media_pb2.SupervisorDecision(kind="ivr", reason="cue", action="allow_dtmf")
        )
        media.send(signal=media_pb2.ReservationSignal(name="table_confirmed"))
        media.send(signal=media_pb2.ReservationSignal(name="table_confirmed"))
        media.send(
            outcome=media_pb2.CallOutcome(
                outcome="booked",
                summary="Table for 2 at 19:00 under Anna",
                date_time="2030-12-01T19:00:00",
                guests=2,
                holder_name="Anna",
                venue_name="Luigi's",
                language="en",
                contact_phone="+1 (212) 555-1234",
            )
        )

        async def recorded() -> bool:
            return bool(
                await core.pool.fetchval(
                    "SELECT outcome_type FROM calls WHERE call_id = $1", call_id
                )
            )

        await eventually(recorded)
    headers = {"X-API-Key": customer.api_key}
    got = (await http.get(f"/calls/{call_id}", headers=headers)).json()
    assert got["transcript_full"] == [
        {
            "speaker": "callee",
            "text": "Luigi's, booked for Anna, see you!",
            "final": True,
            "offset_ms": 120,
            "source": "supervisor_stt",
        }
    ]
    assert got["supervisor_decisions"] == [{"kind": "ivr", "reason": "cue", "action": "allow_dtmf"}]
    assert got["reservation_signals"] == ["table_confirmed"]
    assert got["outcome_type"] == "booked"
    booking = (await http.get("/v1/booking/bookings", headers=headers)).json()[0]
    assert booking["call_id"] == call_id and booking["status"] == "active"
    assert booking["type"] == "restaurant" and booking["guests"] == 2
    assert booking["booking_holder_name"] == "Anna"
    assert booking["booking_date"] == "2030-12-01T19:00:00"
    assert booking["venue_name"] == "Luigi's" and booking["language"] == "en"
    assert booking["contact_phone"] == "+12125551234"


async def test_telegram_question_and_reply_reach_the_call(db_dsn: str) -> None:
    chat, fallback = 1001, 2002
    async with FakeTelegram(chats={chat, fallback}) as telegram:
        settings = make_settings(
            telegram_bot_token=BOT_TOKEN,
            telegram_api_base_url=telegram.base_url,
            telegram_chat_id_fallback=fallback,
            telegram_poll_timeout_sec=1,
        )
        core = await server.start(settings, dsn=db_dsn, port=0, telephony=FakeTelephony())
        try:
            linked = await new_customer(core.pool)
            await core.pool.execute(
                "UPDATE customers SET telegram_chat_id = $2 WHERE customer_id = $1",
                linked.customer_id,
                chat,
            )
            call_id = await start(core, linked)
            async with session(core, call_id) as media:
                await media.next()
                media.send(**ask("t1", "Only 20:30 is free. Take it?"))

                async def sent() -> bool:
                    return len(telegram.sent_messages) == 1

                await eventually(sent)
                question = telegram.sent_messages[0]
                assert question.chat_id == chat and "20:30" in question.text
                telegram.user_replies(chat, question.message_id, "yes, book 20:30")
                got = (await media.next()).answer
                assert (got.request_id, got.answer) == ("t1", "yes, book 20:30")

            # a customer with no channel of their own: the fallback chat, answered by button
            plain = await new_customer(core.pool)
            call_id = await start(core, plain)
            async with session(core, call_id) as media:
                await media.next()
                media.send(**ask("t2", "Accept a window table?"))

                async def sent_twice() -> bool:
                    return len(telegram.sent_messages) == 2

                await eventually(sent_twice)
                question = telegram.sent_messages[1]
                assert question.chat_id == fallback
                assert question.reply_markup is not None
                buttons = [b for row in question.reply_markup["inline_keyboard"] for b in row]
                button = next(b for b in buttons if b["text"] == "no")
                telegram.user_presses(fallback, question.message_id, button["callback_data"])
                got = (await media.next()).answer
                assert (got.request_id, got.answer) == ("t2", "no")
        finally:
            await core.stop(grace=0)
