"""The per-call Media Streams token: what it accepts and every way it refuses."""

from __future__ import annotations

import pytest

from telephony import stream_tokens

KEY = stream_tokens.stream_key("twilio-auth-token")
SID = "CA" + "1" * 32
OTHER_SID = "CA" + "2" * 32
NOW = 1_700_000_000.0
LATER = 1_700_000_600


OWNER = "ws://10.0.3.7:8081"


def refused(
    token: str | None,
    call_id: str = "call-1",
    sid: str = SID,
    now: float = NOW,
    owner: str | None = None,
) -> str:
    with pytest.raises(stream_tokens.StreamTokenRefused) as info:
        stream_tokens.check(KEY, token, call_id, sid, now=now, owner=owner)
    return info.value.reason


def test_an_unbound_token_is_good_for_its_call_with_any_sid_until_it_expires() -> None:
    token = stream_tokens.mint(KEY, "call-1", expires_at=LATER)
    stream_tokens.check(KEY, token, "call-1", SID, now=NOW)
    stream_tokens.check(KEY, token, "call-1", OTHER_SID, now=LATER - 1)
    assert refused(token, now=LATER) == "expired"
    assert refused(token, call_id="call-2") == "mismatch"


def test_a_bound_token_is_good_only_with_its_sid() -> None:
    token = stream_tokens.mint(KEY, "call-1", expires_at=LATER, call_sid=SID)
    stream_tokens.check(KEY, token, "call-1", SID, now=NOW)
    assert refused(token, sid=OTHER_SID) == "mismatch"
    assert refused(token, sid="") == "mismatch"


def test_flipping_the_bound_flag_or_the_expiry_breaks_the_mac() -> None:
    token = stream_tokens.mint(KEY, "call-1", expires_at=LATER, call_sid=SID)
    version, expiry, _, mac = token.split(".")
    assert refused(f"{version}.{expiry}.0.{mac}") == "mismatch"
    assert refused(f"{version}.{int(expiry) + 3600}.1.{mac}") == "mismatch"


def test_another_key_or_a_forged_token_is_refused() -> None:
    other = stream_tokens.stream_key("another-secret")
    token = stream_tokens.mint(other, "call-1", expires_at=LATER)
    assert refused(token) == "mismatch"
    assert refused(f"v1.{LATER}.0.{'A' * 43}") == "mismatch"


@pytest.mark.parametrize(
    "token",
    ["v1", "v2.1.0.abc", "v1.x.0.abc", "v1.1.3.abc", "v1.1.0.a.b", "v1.-1.0.abc", "v1.１.0.abc"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert refused(token) == "malformed"


@pytest.mark.parametrize("token", [None, ""])
def test_a_missing_token_is_refused(token: str | None) -> None:
    assert refused(token) == "missing"


def test_non_ascii_mac_is_a_mismatch_not_an_error() -> None:
    assert refused(f"v1.{LATER}.0.ключ") == "mismatch"


def test_the_key_is_derived_not_the_secret_and_an_empty_secret_is_refused() -> None:
    assert KEY != b"twilio-auth-token" and len(KEY) == 32
    assert stream_tokens.stream_key("twilio-auth-token") == KEY
    with pytest.raises(ValueError):
        stream_tokens.stream_key("")


def test_first_stream_and_sid_bound_tokens_are_what_they_were_before_owners() -> None:
    """Tokens already in Twilio's hands (TwiML of live calls) keep verifying after a deploy."""
    assert (
        stream_tokens.mint(KEY, "call-1", expires_at=LATER)
        == "v1.1700000600.0.0fwDm552IsTGeaMocy_REQbfYluwZ-XK649O2HqXJ1g"
    )
    assert (
        stream_tokens.mint(KEY, "call-1", expires_at=LATER, call_sid=SID)
        == "v1.1700000600.1.rwEOKvv53jyTlwBfCeNePMKLVQf8JXHcQwn-Z-qYEHk"
    )


def test_a_token_without_an_owner_binds_none_whatever_owner_is_claimed() -> None:
    token = stream_tokens.mint(KEY, "call-1", expires_at=LATER, call_sid=SID)
    assert stream_tokens.check(KEY, token, "call-1", SID, now=NOW) is None
    # A stream_owner parameter added to it names no owner: nothing gets relayed on its say.
    assert stream_tokens.check(KEY, token, "call-1", SID, now=NOW, owner=OWNER) is None


def test_an_owner_bound_token_names_its_owner_and_only_that_one() -> None:
    token = stream_tokens.mint(KEY, "call-1", expires_at=LATER, call_sid=SID, owner=OWNER)
    assert token.split(".")[2] == "2"
    assert stream_tokens.check(KEY, token, "call-1", SID, now=NOW, owner=OWNER) == OWNER
    assert refused(token, owner="ws://169.254.169.254:80") == "mismatch"  # a tampered owner
    assert refused(token, owner=OWNER + "/") == "mismatch"
    assert refused(token, owner=None) == "mismatch"  # the owner parameter stripped
    assert refused(token, owner=OWNER, sid=OTHER_SID) == "mismatch"
    assert refused(token, owner=OWNER, call_id="call-2") == "mismatch"
    assert refused(token, owner=OWNER, now=LATER) == "expired"


def test_dropping_the_owner_flag_breaks_the_mac() -> None:
    token = stream_tokens.mint(KEY, "call-1", expires_at=LATER, call_sid=SID, owner=OWNER)
    version, expiry, _, mac = token.split(".")
    assert refused(f"{version}.{expiry}.1.{mac}") == "mismatch"
    assert refused(f"{version}.{expiry}.1.{mac}", owner=OWNER) == "mismatch"


def test_only_a_reconnect_names_an_owner() -> None:
    with pytest.raises(ValueError):
        stream_tokens.mint(KEY, "call-1", expires_at=LATER, owner=OWNER)  # no SID yet
    with pytest.raises(ValueError):
        stream_tokens.mint(KEY, "call-1", expires_at=LATER, call_sid=SID, owner="")
