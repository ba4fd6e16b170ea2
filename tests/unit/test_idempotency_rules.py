"""Idempotency-Key rules: the key and fingerprint, and what a retry gets (the verdict)."""

from __future__ import annotations

import pytest

from core.domain import idempotency
from core.domain.errors import CallagentError
from core.domain.idempotency import Recorded, Stored


def _key(body: object = None, operation: str = "start_call") -> idempotency.Key:
    key = idempotency.make_key("cus_1", "k1", operation, body or {"brief": "hi", "n": 1})
    assert key is not None
    return key


def _recorded(key: idempotency.Key, **fields: object) -> Recorded:
    values: dict[str, object] = {
        "fingerprint": key.fingerprint,
        "status": "done",
        "response": b"first",
        "error_reason": None,
        "error_message": None,
        "stale": False,
    }
    values.update(fields)
    return Recorded(**values)  # type: ignore[arg-type]


def test_no_key_means_no_idempotency() -> None:
    assert idempotency.make_key("cus_1", None, "start_call", {}) is None


@pytest.mark.parametrize("blank", ["", " ", "   ", "\t", " \t\n"])
def test_a_blank_key_is_refused_not_ignored(blank: str) -> None:
    with pytest.raises(CallagentError) as caught:
        idempotency.make_key("cus_1", blank, "start_call", {})
    assert caught.value.reason == "IDEMPOTENCY_KEY_BLANK"
    assert caught.value.spec.http_status == 400
    assert caught.value.spec.public_code == "idempotency_key_blank"


def test_a_key_with_inner_spaces_is_a_key() -> None:
    assert idempotency.make_key("cus_1", " a b ", "start_call", {}) is not None


def test_the_key_length_limit() -> None:
    assert idempotency.make_key("c", "k" * idempotency.MAX_KEY_LENGTH, "op", {}) is not None
    with pytest.raises(CallagentError) as caught:
        idempotency.make_key("c", "k" * (idempotency.MAX_KEY_LENGTH + 1), "op", {})
    assert caught.value.reason == "IDEMPOTENCY_KEY_TOO_LONG"
    assert caught.value.message == "Idempotency-Key must be at most 255 chars"


def test_the_fingerprint_is_canonical_and_covers_the_operation() -> None:
    assert _key({"a": 1, "b": 2}).fingerprint == _key({"b": 2, "a": 1}).fingerprint
    assert _key({"a": 1}).fingerprint != _key({"a": 2}).fingerprint
    assert _key({"a": 1}).fingerprint != _key({"a": 1}, operation="skill:x").fingerprint


def test_a_finished_first_attempt_is_replayed() -> None:
    key = _key()
    assert idempotency.verdict(_recorded(key), key) == Stored(b"first", None)


def test_a_stored_error_is_replayed_as_the_same_error() -> None:
    key = _key()
    stored = idempotency.verdict(
        _recorded(key, response=None, error_reason="DIAL_FAILED", error_message="refused"),
        key,
    )
    assert stored.response is None and stored.error is not None
    assert (stored.error.reason, stored.error.message) == ("DIAL_FAILED", "refused")


def test_an_unknown_stored_reason_replays_no_error() -> None:
    key = _key()
    stored = idempotency.verdict(_recorded(key, error_reason="GONE_REASON"), key)
    assert stored == Stored(b"first", None)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"fingerprint": b"other body"}, "IDEMPOTENCY_CONFLICT"),
        ({"fingerprint": b"other body", "status": "running"}, "IDEMPOTENCY_CONFLICT"),
        ({"status": "running"}, "IDEMPOTENCY_IN_PROGRESS"),
        ({"status": "running", "stale": True}, "IDEMPOTENCY_STATE_UNKNOWN"),
    ],
)
def test_verdicts_that_refuse_the_retry(fields: dict[str, object], reason: str) -> None:
    key = _key()
    with pytest.raises(CallagentError) as caught:
        idempotency.verdict(_recorded(key, **fields), key)
    assert caught.value.reason == reason
