"""WebhookDelivery over real TLS on loopback, against the scripted HTTPS receiver that
verifies every signature; plus the pure sign/verify contract customers rely on."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from core.adapters import webhook_delivery, webhook_urls
from core.adapters.webhook_delivery import WebhookDelivery
from tests.fakes.webhook_receiver import SECRET, FakeWebhookReceiver, Step

LOOPBACK = ["127.0.0.1"]


def _payload(request_id: str = "req_01", question: str = "Is 7pm OK?") -> dict[str, object]:
    return {
        "call_id": "call_abc",
        "request_id": request_id,
        "question": question,
        "options": ["yes", "no"],
        "answer_url": "https://api.example.test/v1/calls/call_abc/answers/req_01",
        "timeout_sec": 60,
    }


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    async with FakeWebhookReceiver() as fake:
        yield fake


@pytest.fixture
async def delivery(receiver: FakeWebhookReceiver) -> AsyncIterator[WebhookDelivery]:
    async with WebhookDelivery(
        LOOPBACK, timeout_sec=2.0, backoff_base_sec=0.01, ssl_context=receiver.ssl_context
    ) as d:
        yield d


async def test_signed_compact_post_is_verified_by_the_receiver(
    receiver: FakeWebhookReceiver, delivery: WebhookDelivery
) -> None:
    payload = _payload()
    result = await delivery.deliver(receiver.url, SECRET, payload)

    assert result == webhook_delivery.DeliveryResult(delivered=True, attempts=1, status=202)
    (request,) = receiver.requests
    assert request.signature_ok
    assert request.body == orjson.dumps(payload)
    assert request.payload == payload
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "callagent-webhooks/1"
    assert request.headers["callagent-request-id"] == "req_01"
    assert request.headers["callagent-signature"].startswith("t=")


async def test_wrong_secret_fails_the_receivers_check(
    receiver: FakeWebhookReceiver, delivery: WebhookDelivery
) -> None:
    result = await delivery.deliver(receiver.url, "not-the-shared-secret", _payload())

    assert not result.delivered and result.status == 401 and result.attempts == 1
    assert [r.signature_ok for r in receiver.requests] == [False]


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_transient_statuses_are_retried_until_success(
    receiver: FakeWebhookReceiver, delivery: WebhookDelivery, status: int
) -> None:
    receiver.fail(2, status=status)

    result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert result.delivered and result.attempts == 3 and result.status == 202
    assert len(receiver.requests) == 3
    assert all(r.signature_ok for r in receiver.requests)
    assert {r.headers["callagent-request-id"] for r in receiver.requests} == {"req_01"}


async def test_gives_up_after_the_last_attempt(
    receiver: FakeWebhookReceiver, delivery: WebhookDelivery
) -> None:
    receiver.fail(5)

    result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert not result.delivered and not result.refused
    assert (result.attempts, result.status, result.error) == (3, 500, "HTTP 500")
    assert len(receiver.requests) == 3


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_client_errors_are_final(
    receiver: FakeWebhookReceiver, delivery: WebhookDelivery, status: int
) -> None:
    receiver.reject(status)

    result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert not result.delivered and result.attempts == 1 and result.status == status
    assert len(receiver.requests) == 1


async def test_timeouts_are_retried_then_given_up(receiver: FakeWebhookReceiver) -> None:
    receiver.hang(3, seconds=30)
    async with WebhookDelivery(
        LOOPBACK, timeout_sec=0.3, backoff_base_sec=0.01, ssl_context=receiver.ssl_context
    ) as delivery:
        result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert not result.delivered and result.attempts == 3 and result.error == "timed out"
    assert len(receiver.requests) == 3


async def test_timeout_then_success(receiver: FakeWebhookReceiver) -> None:
    receiver.hang(1, seconds=30)
    async with WebhookDelivery(
        LOOPBACK, timeout_sec=0.3, backoff_base_sec=0.01, ssl_context=receiver.ssl_context
    ) as delivery:
        result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert result.delivered and result.attempts == 2


@pytest.mark.parametrize(
    ("mode", "expected_mode"), [("voice", "voice"), ("context", "context"), (None, None)]
)
async def test_synchronous_answer_is_parsed(
    receiver: FakeWebhookReceiver,
    delivery: WebhookDelivery,
    mode: str | None,
    expected_mode: str | None,
) -> None:
    receiver.answer("Yes, 7pm works for us", mode=mode)

    result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert result.delivered and result.status == 200
    assert result.sync_answer == "Yes, 7pm works for us"
    assert result.sync_mode == expected_mode


@pytest.mark.parametrize("body", [{"answer": ""}, {"answer": 7}, {"status": "queued"}])
async def test_a_2xx_without_a_usable_answer_is_only_delivered(
    receiver: FakeWebhookReceiver, delivery: WebhookDelivery, body: dict[str, object]
) -> None:
    receiver.script(Step(status=200, json=body))

    result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert result.delivered and result.sync_answer is None and result.sync_mode is None


async def test_redirects_are_not_followed(
    receiver: FakeWebhookReceiver, delivery: WebhookDelivery
) -> None:
    receiver.redirect(f"{receiver.base_url}/elsewhere")

    result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert not result.delivered and result.attempts == 1 and result.status == 302
    assert result.error is not None and "redirect" in result.error
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_loopback_is_refused_at_delivery_without_an_allow_list(
    receiver: FakeWebhookReceiver,
) -> None:
    async with WebhookDelivery([], ssl_context=receiver.ssl_context) as delivery:
        result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert result.refused and not result.delivered and result.attempts == 0
    assert receiver.requests == []


async def test_a_url_accepted_at_configuration_is_refused_at_delivery(
    receiver: FakeWebhookReceiver,
) -> None:
    url = f"https://localhost:{receiver.port}/hook"
    # Configuration time: accepted (here because of an allow list the delivery side lacks).
    assert await webhook_urls.check(url, ["localhost"]) == url

    async with WebhookDelivery([], ssl_context=receiver.ssl_context) as delivery:
        result = await delivery.deliver(url, SECRET, _payload())

    assert result.refused and result.attempts == 0
    assert result.error is not None and "non-public address" in result.error
    assert receiver.requests == []


async def test_the_6to4_form_of_loopback_is_refused_at_delivery(
    receiver: FakeWebhookReceiver,
) -> None:
    # Stored before the guard unwrapped 6to4 (or slipped in some other way): still refused.
    url = f"https://[2002:7f00:1::]:{receiver.port}/hook"
    async with WebhookDelivery([], ssl_context=receiver.ssl_context) as delivery:
        result = await delivery.deliver(url, SECRET, _payload())

    assert result.refused and result.attempts == 0
    assert result.error is not None and "non-public address (2002:7f00:1::)" in result.error
    assert receiver.requests == []


async def test_hostname_is_pinned_to_the_checked_address_and_tls_verifies_the_name() -> None:
    # The certificate names only "localhost": the pinned request (to 127.0.0.1) must still
    # present and verify that name, and send it as the Host header.
    async with FakeWebhookReceiver(hostnames=("localhost",)) as receiver:
        url = f"https://localhost:{receiver.port}/hook"
        async with WebhookDelivery(["127.0.0.0/8"], ssl_context=receiver.ssl_context) as d:
            result = await d.deliver(url, SECRET, _payload())

        assert result.delivered
        (request,) = receiver.requests
        assert request.headers["host"] == f"localhost:{receiver.port}"


async def test_an_untrusted_certificate_is_final(receiver: FakeWebhookReceiver) -> None:
    async with WebhookDelivery(LOOPBACK, backoff_base_sec=0.01) as delivery:
        result = await delivery.deliver(receiver.url, SECRET, _payload())

    assert not result.delivered and result.attempts == 1
    assert result.error == "TLS certificate rejected"
    assert receiver.requests == []


async def test_plain_http_is_refused(delivery: WebhookDelivery) -> None:
    result = await delivery.deliver("http://127.0.0.1:9/hook", SECRET, _payload())

    assert result.refused and result.attempts == 0


async def test_payload_must_name_its_request(
    receiver: FakeWebhookReceiver, delivery: WebhookDelivery
) -> None:
    with pytest.raises(ValueError, match="request_id"):
        await delivery.deliver(receiver.url, SECRET, {"question": "?"})


async def test_secret_body_and_url_path_stay_out_of_logs(
    receiver: FakeWebhookReceiver, delivery: WebhookDelivery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail(1)
    question = "Can Mr Jonathan Privateperson move to 8pm?"
    url = f"{receiver.url}?token=url-credential-xyz"

    result = await delivery.deliver(url, SECRET, _payload(question=question))

    assert result.delivered and result.attempts == 2
    loggers = {r.name for r in caplog.records}
    assert {"core.adapters.webhook_delivery", "httpx"} <= loggers  # the logs we check do exist
    for record in caplog.records:
        rendered = record.getMessage() + repr(record.__dict__)
        for forbidden in (SECRET, "Privateperson", "url-credential-xyz", "/hook"):
            assert forbidden not in rendered, (record.name, rendered)


# -- sign / verify ---------------------------------------------------------------------

BODY = orjson.dumps(_payload())


def test_verify_accepts_what_sign_produces() -> None:
    now = int(time.time())
    header = webhook_delivery.signature_header(SECRET, now, BODY)

    assert header == f"t={now},v1={webhook_delivery.sign(SECRET, now, BODY)}"
    assert webhook_delivery.verify(SECRET, header, BODY, now=now + 10)


def test_verify_rejects_a_tampered_body() -> None:
    now = int(time.time())
    header = webhook_delivery.signature_header(SECRET, now, BODY)

    assert not webhook_delivery.verify(SECRET, header, BODY.replace(b"7pm", b"9pm"), now=now)


def test_verify_rejects_an_old_or_future_timestamp() -> None:
    then = int(time.time()) - 301
    header = webhook_delivery.signature_header(SECRET, then, BODY)

    assert not webhook_delivery.verify(SECRET, header, BODY, now=then + 301)
    assert not webhook_delivery.verify(SECRET, header, BODY, now=then - 301)
    assert webhook_delivery.verify(SECRET, header, BODY, now=then + 300)


def test_verify_rejects_a_moved_timestamp_and_another_secret() -> None:
    now = int(time.time())
    v1 = webhook_delivery.sign(SECRET, now, BODY)

    assert not webhook_delivery.verify(SECRET, f"t={now + 1},v1={v1}", BODY, now=now)
    assert not webhook_delivery.verify("other", f"t={now},v1={v1}", BODY, now=now)


def test_verify_accepts_any_of_several_signatures_for_rotation() -> None:
    now = int(time.time())
    old = webhook_delivery.sign("old-secret", now, BODY)
    new = webhook_delivery.sign(SECRET, now, BODY)

    assert webhook_delivery.verify(SECRET, f"t={now},v1={old},v1={new}", BODY, now=now)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", "t=1", "garbage"])
def test_verify_rejects_malformed_headers(header: str) -> None:
    assert not webhook_delivery.verify(SECRET, header, BODY, now=1)
