"""A DTMF re-connect that the load balancer lands on the other media pod still books.

The chaos test's world (2 gateways, 2 cores, 2 media and the simulated world on one
PostgreSQL, real subprocesses), with a balancer that gives Media Streams upgrades their own
turns: a call's first stream lands on media-a, and the stream Twilio opens after the agent
pressed a key at the IVR venue's menu lands on media-b. media-b must hand it to media-a (whose
bridge waits for it) rather than start a second conversation; the call then books as the
single-pod IVR test does (`tests/e2e/test_venues.py`).
"""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest

from tests.e2e.test_chaos import World, world
from tests.e2e.test_make_run import TERMINAL, poll
from tests.tcp_balancer import StreamTurnBalancer

pytestmark = pytest.mark.timeout(300)

CALLS = 1  # more would only repeat it (streams alternate a, b, a, b) and cost ~20 s each


def log_lines(w: World, proc: str, message: str) -> list[dict[str, object]]:
    found = []
    for line in w.procs[proc].text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("message") == message:
                found.append(record)
    return found


def test_the_reconnect_on_the_other_media_pod_is_relayed_and_the_calls_book() -> None:
    with world(StreamTurnBalancer) as w:
        api = httpx.Client(base_url=w.gateways[0], headers={"X-API-Key": w.key}, timeout=10)
        ids: list[str] = []
        try:
            for _ in range(CALLS):
                body = {
                    "target_phone": "+15550106",  # the IVR venue: press 1 for reservations
                    "brief": "Room for 2 tomorrow, one night, under Anna",
                    "language": "en",
                    "kind": "hotel_booking",
                }
                started = api.post("/calls", json=body)
                assert started.status_code == 202, started.text  # the world queues calls
                call_id = started.json()["call_id"]
                ids.append(call_id)

                def ended(call_id: str = call_id) -> dict[str, object] | None:
                    call = api.get(f"/calls/{call_id}").json()
                    done = call["status"] in TERMINAL and call["outcome_type"]
                    return call if done else None

                call = poll(ended, timeout=120)
                assert call["outcome_type"] == "booked", (call, w.logs())
            bookings = api.get("/v1/booking/bookings", params={"limit": 100}).json()
            assert {b["call_id"] for b in bookings} == set(ids)
        finally:
            api.close()
        relayed = log_lines(w, "media-b", "media stream relayed to the call's owner")
        assert sorted(str(r["call_id"]) for r in relayed) == sorted(ids), w.logs()
        assert log_lines(w, "media-a", "media stream relayed to the call's owner") == []
        # media-b opened no call of its own: no bridge, no session with core.
        assert log_lines(w, "media-b", "gemini live connected") == []
