"""Signed, retried, SSRF-safe POSTs of ask_user questions to a customer's webhook.

A customer who sets a webhook URL receives each ask_user question as a compact JSON POST
signed Stripe-style (`Callagent-Signature: t=<unix ts>,v1=<hex HMAC-SHA256>` over
`"<t>.<body>"`), so they can prove it came from us and reject replays; `sign` and `verify`
are the reference implementation for customers, docs and tests. The customer may answer in
the response itself (`{"answer": "...", "mode": "voice"|"context"}`) or later through the
answer URL in the payload.

The URL was checked when it was configured, but a hostname can re-resolve to a private
address since (DNS rebinding). So before every attempt `core.adapters.webhook_urls.check` runs
again, the host is resolved once more, every address is checked as an IP, and the request
is pinned to those checked addresses (TLS still verifies the certificate for the original
hostname through SNI). Keep-alive is off, so a TLS session verified for one hostname is
never reused for another that shares its IP. Proxies from the environment are ignored
because a proxy would resolve the name itself. Redirects are never followed: a 3xx could
point anywhere, including inside our network.

Retries (exponential backoff with jitter) cover only failures where the customer did not
get or could not take the request: cannot connect, timeouts, 408, 429 and 5xx. Delivery is
at least once; customers deduplicate by `Callagent-Request-Id`. The secret, the body and
the URL's path and query are never logged.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import ssl
import time
import urllib.parse
import weakref
from collections.abc import Sequence
from typing import Any, Literal, TypeGuard

import httpx
import orjson

from core.adapters import webhook_urls
from core.domain.errors import CallagentError

logger = logging.getLogger(__name__)

USER_AGENT = "callagent-webhooks/1"
SIGNATURE_HEADER = "Callagent-Signature"
REQUEST_ID_HEADER = "Callagent-Request-Id"
SyncMode = Literal["voice", "context"]
_RETRYABLE_STATUSES = frozenset({408, 429})
_MAX_RESPONSE_BYTES = 64 * 1024
_MAX_RETRY_AFTER_SEC = 5.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret` (the `v1=` value)."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The full `Callagent-Signature` header value for one request."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_sec: float = 300) -> bool:
    """True if `header` signs exactly `body` under `secret`, within `tolerance_sec` of `now`.

    Several `v1=` entries are accepted (one matching is enough) so a secret can be rotated;
    the timestamp bound rejects replays of an old, captured request.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_sec:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one delivery ended.

    Attributes:
        delivered: the customer answered 2xx.
        attempts: requests sent (0 when refused before the first).
        status: the last HTTP status received, if any.
        sync_answer: the answer given in the 2xx response body, if any.
        sync_mode: that answer's `mode`, None when absent or not voice/context.
        error: why it was not delivered, as a short static phrase.
        refused: the URL was refused (private address, not https, ...); never retried.
    """

    delivered: bool
    attempts: int
    status: int | None = None
    sync_answer: str | None = None
    sync_mode: SyncMode | None = None
    error: str | None = None
    refused: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    """One address to send to: the URL to connect to plus the Host/SNI of the original."""

    url: httpx.URL
    host_header: str | None
    sni_hostname: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Attempt:
    """One attempt's outcome: a final result, or a retryable failure with a hint."""

    result: DeliveryResult | None
    status: int | None = None
    error: str | None = None
    retry_after_sec: float | None = None


# Request URLs of webhook deliveries still in flight (dropped with their requests).
_WEBHOOK_URLS: weakref.WeakSet[httpx.URL] = weakref.WeakSet()


class _UrlRedactor(logging.Filter):
    """httpx logs every request URL at INFO; a webhook URL may carry credentials in its
    path or query, so for webhook requests only the origin is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(_is_webhook(a) for a in record.args):
            record.args = tuple(_origin(a) if _is_webhook(a) else a for a in record.args)
        return True


# The same URLs as text: another filter on the "httpx" logger may have turned the URL
# object into a string before this one runs, so membership is checked on the text too.
_WEBHOOK_URL_TEXTS: collections.Counter[str] = collections.Counter()


def _is_webhook(arg: object) -> TypeGuard[httpx.URL]:
    if isinstance(arg, httpx.URL) and arg in _WEBHOOK_URLS:
        return True
    return isinstance(arg, str | httpx.URL) and _WEBHOOK_URL_TEXTS[str(arg)] > 0


def _origin(arg: object) -> str:
    url = httpx.URL(str(arg))
    return f"{url.scheme}://{url.netloc.decode('ascii')}/…"


def _install_url_redactor() -> None:
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _UrlRedactor) for f in httpx_logger.filters):
        httpx_logger.addFilter(_UrlRedactor())


class WebhookDelivery:
    """Delivers ask_user payloads to customer webhooks over one owned `httpx.AsyncClient`.

    `allowed_hosts` are hosts or CIDRs exempt from the private-address refusal (the
    WEBHOOK_ALLOWED_HOSTS setting; tests allow 127.0.0.1). `ssl_context` replaces the
    default trust store (tests pass one trusting their own CA). Close with `aclose()`.
    """

    def __init__(
        self,
        allowed_hosts: Sequence[str],
        *,
        timeout_sec: float = 5.0,
        attempts: int = 3,
        backoff_base_sec: float = 0.5,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._allowed = tuple(allowed_hosts)
        self._timeout_sec = timeout_sec
        self._attempts = attempts
        self._backoff_base_sec = backoff_base_sec
        _install_url_redactor()
        self._client = httpx.AsyncClient(
            verify=ssl_context if ssl_context is not None else True,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout_sec),
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": USER_AGENT},
        )

    async def __aenter__(self) -> WebhookDelivery:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def deliver(self, url: str, secret: str, payload: dict[str, Any]) -> DeliveryResult:
        """POST `payload` (which must carry a string `request_id`) to `url`, signed with
        `secret`, retrying transient failures; never raises for delivery failures."""
        request_id = payload.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ValueError("payload must carry a non-empty string request_id")
        body = orjson.dumps(payload)
        log_extra: dict[str, object] = {"request_id": request_id, "host": _log_host(url)}
        last = _Attempt(result=None)
        for attempt in range(1, self._attempts + 1):
            try:
                targets = await self._targets(url)
            except CallagentError as err:
                logger.warning(
                    "webhook refused", extra={**log_extra, "attempt": attempt, "error": err.message}
                )
                return DeliveryResult(
                    delivered=False,
                    attempts=attempt - 1,
                    status=last.status,
                    error=f"refused: {err.message}",
                    refused=True,
                )
            except TimeoutError:
                targets = []
            if targets:
                last = await self._attempt(targets, secret, request_id, body)
            else:
                last = _Attempt(result=None, error="resolving the host timed out")
            if last.result is not None:
                result = dataclasses.replace(last.result, attempts=attempt)
                level = logging.INFO if result.delivered else logging.WARNING
                logger.log(
                    level,
                    "webhook delivered" if result.delivered else "webhook rejected",
                    extra={**log_extra, "attempt": attempt, "status": result.status},
                )
                return result
            logger.warning(
                "webhook attempt failed",
                extra={**log_extra, "attempt": attempt, "status": last.status, "error": last.error},
            )
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff(attempt, last.retry_after_sec))
        return DeliveryResult(
            delivered=False, attempts=self._attempts, status=last.status, error=last.error
        )

    def _backoff(self, attempt: int, retry_after_sec: float | None) -> float:
        delay = self._backoff_base_sec * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.0)
        if retry_after_sec is not None:
            delay = max(delay, min(retry_after_sec, _MAX_RETRY_AFTER_SEC))
        return delay

    async def _targets(self, url: str) -> list[_Target]:
        """Check `url` now and pin it to addresses that are themselves checked.

        Raises:
            CallagentError: INVALID_ARGUMENT_WEBHOOK_URL when the URL or any address is refused.
        """
        async with asyncio.timeout(self._timeout_sec):
            await webhook_urls.check(url, self._allowed)
            try:
                parsed = httpx.URL(url)
            except httpx.InvalidURL:
                raise CallagentError(
                    "INVALID_ARGUMENT_WEBHOOK_URL", "webhook URL is not a valid URL"
                ) from None
            host = parsed.host
            if host in self._allowed:
                return [_Target(parsed, None, None)]
            port = parsed.port or 443
            if _is_ip(host):
                return [await self._pinned(parsed, host, port, None, None)]
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError):
                raise CallagentError(
                    "INVALID_ARGUMENT_WEBHOOK_URL", "webhook host could not be resolved"
                ) from None
            addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
            sni = parsed.raw_host.decode("ascii")
            host_header = parsed.netloc.decode("ascii")
            return [await self._pinned(parsed, a, port, host_header, sni) for a in addresses]

    async def _pinned(
        self, url: httpx.URL, address: str, port: int, host_header: str | None, sni: str | None
    ) -> _Target:
        # A bare URL for the address: the check sees exactly the IP we will connect to.
        literal = f"[{address}]" if ":" in address else address
        await webhook_urls.check(f"https://{literal}:{port}/", self._allowed)
        return _Target(url.copy_with(host=address), host_header, sni)

    async def _attempt(
        self, targets: list[_Target], secret: str, request_id: str, body: bytes
    ) -> _Attempt:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret, timestamp, body),
            REQUEST_ID_HEADER: request_id,
        }
        try:
            async with asyncio.timeout(self._timeout_sec):
                for index, target in enumerate(targets):
                    try:
                        return await self._send(target, headers, body)
                    except httpx.ConnectError as exc:
                        if _tls_rejected(exc):
                            return _Attempt(
                                DeliveryResult(False, 0, error="TLS certificate rejected")
                            )
                        if index == len(targets) - 1:
                            raise
        except httpx.ConnectError:
            return _Attempt(result=None, error="cannot connect")
        except (httpx.TimeoutException, TimeoutError):
            return _Attempt(result=None, error="timed out")
        except httpx.TransportError as exc:
            return _Attempt(result=None, error=f"transport failed ({type(exc).__name__})")
        return _Attempt(result=None, error="no address to connect to")

    async def _send(self, target: _Target, headers: dict[str, str], body: bytes) -> _Attempt:
        request_headers = dict(headers)
        extensions: dict[str, Any] = {}
        if target.host_header is not None:
            request_headers["Host"] = target.host_header
        if target.sni_hostname is not None:
            extensions["sni_hostname"] = target.sni_hostname
        request = self._client.build_request(
            "POST", target.url, headers=request_headers, content=body, extensions=extensions
        )
        _WEBHOOK_URLS.add(request.url)
        text = str(request.url)
        _WEBHOOK_URL_TEXTS[text] += 1
        try:
            response = await self._client.send(request, stream=True)
        finally:
            _WEBHOOK_URL_TEXTS[text] -= 1
            if _WEBHOOK_URL_TEXTS[text] <= 0:
                del _WEBHOOK_URL_TEXTS[text]
        try:
            status = response.status_code
            if 200 <= status < 300:
                answer, mode = _sync_answer(await _read_capped(response))
                return _Attempt(
                    DeliveryResult(True, 0, status=status, sync_answer=answer, sync_mode=mode)
                )
            if status in _RETRYABLE_STATUSES or status >= 500:
                return _Attempt(
                    result=None,
                    status=status,
                    error=f"HTTP {status}",
                    retry_after_sec=_retry_after(response),
                )
            if 300 <= status < 400:
                error = f"redirect not followed (HTTP {status})"
            else:
                error = f"HTTP {status}"
            return _Attempt(DeliveryResult(False, 0, status=status, error=error))
        finally:
            await response.aclose()


async def _read_capped(response: httpx.Response) -> bytes | None:
    """The body, or None if it is larger than a synchronous answer can sensibly be."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > _MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _sync_answer(body: bytes | None) -> tuple[str | None, SyncMode | None]:
    if not body:
        return None, None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    answer = data.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        return None, None
    mode = data.get("mode")
    if mode == "voice":
        return answer, "voice"
    if mode == "context":
        return answer, "context"
    return answer, None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _log_host(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _tls_rejected(exc: BaseException) -> bool:
    """A certificate the trust store rejects will be rejected again: not worth a retry."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
