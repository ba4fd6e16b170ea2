"""The Twilio stand-in's account and owned-number bodies have api.twilio.com's shape."""

from __future__ import annotations

from sim import twilio_account

API = "/2010-04-01/Accounts/AC" + "0" * 31 + "1"


def test_account_names_its_sid_status_and_uri() -> None:
    body = twilio_account.account_json(API, "token", "suspended")
    assert body["sid"] == API.rsplit("/", 1)[-1]
    assert body["status"] == "suspended"
    assert body["uri"] == f"{API}.json"


def test_numbers_page_filters_by_phone_number_and_reports_voice() -> None:
    numbers = {"+15005550006": True, "+15005550007": False}
    page = twilio_account.numbers_page(API, numbers, {"PhoneNumber": "+15005550007"})
    [number] = page["incoming_phone_numbers"]
    assert number["phone_number"] == "+15005550007"
    assert number["capabilities"]["voice"] is False
    assert number["sid"].startswith("PN") and len(number["sid"]) == 34
    assert page["next_page_uri"] is None


def test_numbers_page_without_a_match_is_empty() -> None:
    page = twilio_account.numbers_page(API, {"+15005550006": True}, {"PhoneNumber": "+1999"})
    assert page["incoming_phone_numbers"] == []
    assert page["end"] == 0
