"""A 422 never fails to render what it echoes (found by contract fuzzing: a 2**70 input
made orjson raise, and the 422 became a 500)."""

from __future__ import annotations

import orjson
import pytest
from fastapi.exceptions import RequestValidationError

from gateway import errors


@pytest.mark.parametrize("value", [2**70, -(2**70), 2**64, -(2**63) - 1])
def test_integers_beyond_64_bits_are_echoed_as_text(value: int) -> None:
    err = RequestValidationError(
        [{"type": "bool_type", "loc": ("body", "rotate_secret"), "msg": "bad", "input": value}]
    )
    body = orjson.loads(errors.from_validation_error(err).body)
    assert body["detail"][0]["input"] == str(value)


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 2**64 - 1, 0, True, 1.5])
def test_other_numbers_are_echoed_as_they_are(value: object) -> None:
    err = RequestValidationError(
        [{"type": "x", "loc": ("body", "field"), "msg": "bad", "input": value}]
    )
    assert orjson.loads(errors.from_validation_error(err).body)["detail"][0]["input"] == value
