"""Contract fuzzing against the live stack (gateway + core on loopback, real PostgreSQL).

Every operation of the public contract, under a customer key, an admin key, invalid data,
invalid credentials and pinned real ids (tests/fuzz/harness.py). The test fails on any 5xx,
any response that breaks its schema in the contract, and any request the server never
answered. Undocumented 4xx statuses are allowed: docs/errors.md lists them.

The bounded run here takes FUZZ_EXAMPLES (default below) cases per operation and mode;
`make fuzz` runs the same test with a large budget and prints the report.
"""

from __future__ import annotations

import asyncio
import os

import httpx

from core.main import Core
from tests.conftest import new_customer
from tests.fuzz import harness

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))  # ~50 s wall on 2 cores
CALL = {"target_phone": "+15550100", "brief": "Table for 2 tomorrow at 19:00 under Anna"}


async def test_no_input_reaches_a_server_error(core: Core, gateway_url: str) -> None:
    customer = await new_customer(core.pool)
    admin = await new_customer(core.pool, admin=True)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        started = await http.post("/calls", json=CALL, headers={"X-API-Key": customer.api_key})
        assert started.status_code == 201, started.text
        skills = (await http.get("/skills")).json()
    seeds = {"call_id": started.json()["call"]["call_id"], "skill_id": skills[0]["skill_id"]}
    keys = {"customer": customer.api_key, "admin": admin.api_key}

    # schemathesis is synchronous: run it off the event loop that serves gateway and core.
    report = await asyncio.to_thread(harness.fuzz, gateway_url, keys, seeds, EXAMPLES)

    print(report.render())  # the figures `make fuzz` reports
    assert set(report.per_operation) == harness.contract_operations(), "operations never reached"
    assert not report.findings, report.render()
