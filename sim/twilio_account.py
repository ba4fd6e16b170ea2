"""The bodies of Twilio's account and owned-number resources, as the stand-in sends them.

`callagent doctor` reads both through the twilio SDK before a real call: the account's
`status` (active, suspended, closed) and whether `TWILIO_FROM_NUMBER` is among the account's
`IncomingPhoneNumbers` with `capabilities.voice`. Shapes follow api.twilio.com's 2010-04-01 JSON.
"""

from __future__ import annotations

import datetime
import email.utils
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

DEFAULT_NUMBER = "+15005550006"  # what TWILIO_FROM_NUMBER defaults to


def _now() -> str:
    return email.utils.format_datetime(datetime.datetime.now(datetime.UTC))


def account_json(api: str, auth_token: str, status: str) -> dict[str, Any]:
    """`GET /2010-04-01/Accounts/{AC}.json`; `api` is that path without `.json`."""
    sid = api.rsplit("/", 1)[-1]
    return {
        "sid": sid,
        "owner_account_sid": sid,
        "friendly_name": "Simulated account",
        "status": status,
        "type": "Full",
        "auth_token": auth_token,
        "date_created": _now(),
        "date_updated": _now(),
        "uri": f"{api}.json",
        "subresource_uris": {"calls": f"{api}/Calls.json"},
    }


def numbers_page(api: str, numbers: Mapping[str, bool], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of `IncomingPhoneNumbers.json`; `numbers` maps E.164 to voice capability.
    `PhoneNumber=` filters (Twilio matches a pattern; an exact E.164 is enough here)."""
    wanted = query.get("PhoneNumber")
    page_size = int(query.get("PageSize", "50"))
    found = [n for n in numbers if wanted in (None, n)][:page_size]
    uri = f"{api}/IncomingPhoneNumbers.json?{urllib.parse.urlencode(dict(query))}"
    items = [_number_json(api, n, numbers[n]) for n in found]
    return one_page("incoming_phone_numbers", items, uri, page_size)


def one_page(key: str, items: list[dict[str, Any]], uri: str, page_size: int) -> dict[str, Any]:
    """Twilio's list envelope (2010 API) for a first and only page of `items`."""
    return {
        key: items,
        "first_page_uri": uri,
        "next_page_uri": None,
        "previous_page_uri": None,
        "page": 0,
        "page_size": page_size,
        "start": 0,
        "end": max(len(items) - 1, 0),
        "uri": uri,
    }


def _number_json(api: str, number: str, voice: bool) -> dict[str, Any]:
    sid = "PN" + uuid.uuid5(uuid.NAMESPACE_URL, number).hex
    return {
        "sid": sid,
        "account_sid": api.rsplit("/", 1)[-1],
        "phone_number": number,
        "friendly_name": number,
        "capabilities": {"voice": voice, "sms": True, "mms": True, "fax": False},
        "status": "in-use",
        "voice_url": "",
        "api_version": "2010-04-01",
        "date_created": _now(),
        "date_updated": _now(),
        "uri": f"{api}/IncomingPhoneNumbers/{sid}.json",
    }
