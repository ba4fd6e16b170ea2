"""Contract fuzzing: schemathesis drives every operation of the public contract against a live
gateway and records each response's status and any 5xx or response-schema violation.

Every operation is fuzzed under several identities ("modes"):

- `customer`, `admin`: valid schema data with a real key; the other credential inputs
  (X-Gateway-Context, the recording's `api_key` query) are dropped so requests reach core.
- `customer-invalid`: schema-breaking data (negative generation) with the customer key.
- `anonymous`: every header as generated, so credentials that cannot be valid (control bytes,
  non-ASCII, huge values, none at all) are sent too.
- `seeded`, `seeded-admin`: like `customer`/`admin`, with path ids pinned to a real call and a
  real skill, so 200 bodies are checked against their schemas as well.

Failures are collected rather than raised, so one run lists all of them; the first (shortest)
request seen for each (operation, status, failure) is kept as its example.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

# shared/ sits beside the checkout (or beside the folder of worktrees holding it)
CONTRACT = next(
    (
        folder / "shared/contract/openapi.json"
        for folder in pathlib.Path(__file__).resolve().parents[3:]
        if (folder / "shared/contract/openapi.json").exists()
    ),
    pathlib.Path(__file__).resolve().parents[3] / "shared/contract/openapi.json",
)
CHECKS = [not_a_server_error, response_schema_conformance]
# Credential inputs other than X-API-Key: in the keyed modes a random value would only earn a 401.
OTHER_CREDENTIALS = {"header": ("X-Gateway-Context",), "query": ("api_key",)}
# FUZZ_SEED=<int> explores other inputs than the fixed derandomized run (`make fuzz FUZZ_SEED=7`).
SEED = int(os.environ["FUZZ_SEED"]) if os.environ.get("FUZZ_SEED") else None
REQUEST_TIMEOUT = 5.0  # seconds; an event stream is cut after its first event or this long


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    key: str | None  # None: send the generated X-API-Key (or none)
    generation: GenerationMode = GenerationMode.POSITIVE
    path_parameters: dict[str, str] | None = None


@dataclasses.dataclass
class Finding:
    operation: str
    status: int
    kind: str  # "5xx" or the failed check's title
    count: int
    request: str  # the shortest request seen: a curl command, keys elided
    response: str
    others: list[str] = dataclasses.field(default_factory=list)  # a few more, to compare


@dataclasses.dataclass
class Report:
    per_operation: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    per_status: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    findings: dict[tuple[str, int, str], Finding] = dataclasses.field(default_factory=dict)
    skipped: list[str] = dataclasses.field(default_factory=list)
    # statuses the contract does not list for the operation (allowed: docs/errors.md has them)
    undocumented: dict[str, set[int]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(set)
    )
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.per_operation.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.per_status.items() if status >= 500)

    @property
    def schema_violations(self) -> int:
        return sum(f.count for f in self.findings.values() if f.status and f.kind != "5xx")

    @property
    def unanswered(self) -> int:
        return sum(f.count for f in self.findings.values() if not f.status)

    def record(self, operation: str, status: int, kind: str, request: str, response: str) -> None:
        slot = (operation, status, kind)
        seen = self.findings.get(slot)
        if seen is None:
            self.findings[slot] = Finding(operation, status, kind, 1, request, response)
            return
        seen.count += 1
        if len(request) < len(seen.request):
            request, seen.request, seen.response = seen.request, request, response
        if len(seen.others) < 3:
            seen.others.append(request)

    def render(self) -> str:
        lines = [
            f"contract fuzz: {self.total} requests in {self.seconds:.1f} s, "
            f"{self.server_errors} 5xx, {self.schema_violations} schema violations, "
            f"{self.unanswered} unanswered "
            f"({'seed ' + str(SEED) if SEED is not None else 'derandomized'})",
            "per operation:",
            *(f"  {n:6d}  {op}" for op, n in sorted(self.per_operation.items())),
            "per status: "
            + ", ".join(f"{status}: {n}" for status, n in sorted(self.per_status.items())),
        ]
        for (op, status, kind), f in sorted(self.findings.items()):
            lines += [
                f"FINDING {op} -> {status} [{kind}] x{f.count}",
                f"  request:  {f.request}",
                f"  response: {f.response}",
                *(f"  also:     {other}" for other in f.others),
            ]
        lines += [
            f"undocumented status {', '.join(map(str, sorted(codes)))}: {op}"
            for op, codes in sorted(self.undocumented.items())
        ]
        lines += [f"skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


def load_schema() -> Any:
    config = schemathesis.Config.from_dict(
        {
            "request-timeout": REQUEST_TIMEOUT,
            "max-stream-events": 1,
            # show fuzzed credentials in findings; the real keys are elided by fuzz_operation
            "output": {"sanitization": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_path(CONTRACT, config=config)


def modes_for(operation: Any, keys: dict[str, str], seeds: dict[str, str]) -> list[Mode]:
    modes = [
        Mode("customer", keys["customer"]),
        Mode("admin", keys["admin"]),
        Mode("anonymous", None),
    ]
    raw = operation.schema.raw_schema["paths"][operation.path][operation.method.lower()]
    # Negative data needs something to break: path ids and optional headers are any string.
    if raw.get("requestBody") or any(p["in"] == "query" for p in raw.get("parameters", ())):
        modes.append(Mode("customer-invalid", keys["customer"], GenerationMode.NEGATIVE))
    path_names = {p["name"] for p in raw.get("parameters", ()) if p["in"] == "path"}
    if path_names and path_names <= seeds.keys():
        pinned = {name: seeds[name] for name in path_names}
        modes.append(Mode("seeded", keys["customer"], path_parameters=pinned))
        modes.append(Mode("seeded-admin", keys["admin"], path_parameters=pinned))
    return modes


def _describe(response: requests.Response | Any) -> str:
    text = response.text if hasattr(response, "text") else str(response)
    return f"{response.status_code} {text[:300]!r}"


def _curl(case: Any, base_url: str, secrets: Iterable[str]) -> str:
    request: str = case.as_curl_command(base_url=base_url)
    for secret in secrets:
        request = request.replace(secret, "<key>")
    return request


def fuzz_operation(
    operation: Any,
    mode: Mode,
    base_url: str,
    session: requests.Session,
    examples: int,
    report: Report,
    secrets: Iterable[str],
) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    raw = operation.schema.raw_schema["paths"][operation.path][operation.method.lower()]
    strategy = operation.as_strategy(mode.generation, path_parameters=mode.path_parameters)

    @settings(
        max_examples=examples,
        database=None,  # no .hypothesis/ in the repo; runs are reproducible via derandomize
        derandomize=SEED is None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # findings are collected, never shrunk
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        if mode.key is not None:
            for location, names in OTHER_CREDENTIALS.items():
                container = case.headers if location == "header" else case.query
                for name in names:
                    if container:
                        container.pop(name, None)
            case.headers["X-API-Key"] = mode.key
        report.per_operation[label] += 1
        try:
            response = case.call(base_url=base_url, session=session)
        except requests.RequestException as exc:
            report.record(
                label,
                0,
                f"no response: {type(exc).__name__}",
                _curl(case, base_url, secrets),
                str(exc)[:300],
            )
            return
        report.per_status[response.status_code] += 1
        if str(response.status_code) not in raw["responses"]:
            report.undocumented[label].add(response.status_code)
        failures: list[Any] = []
        try:
            case.validate_response(response, checks=CHECKS)
        except schemathesis.errors.FailureGroup as group:
            failures = list(group.exceptions)
        except AssertionError as failure:
            failures = [failure]
        kinds = {getattr(f, "title", repr(f)): getattr(f, "message", "") for f in failures}
        if response.status_code >= 500:
            kinds = {"5xx": ""}  # whatever else a 5xx body breaks, the 5xx is the finding
        if not kinds:
            return
        request = _curl(case, base_url, secrets)
        for kind, message in sorted(kinds.items()):
            described = _describe(response) + (f"\n    {message[:600]}" if message else "")
            report.record(label, response.status_code, kind, request, described)

    if SEED is not None:
        run = seed(SEED)(run)
    try:
        run()
    except Unsatisfiable:
        # e.g. negative data for an operation whose only inputs are optional strings
        report.skipped.append(f"{label} [{mode.name}]: no case can be generated")


def fuzz(base_url: str, keys: dict[str, str], seeds: dict[str, str], examples: int) -> Report:
    """Fuzz every operation under every mode with up to `examples` cases each."""
    schema = load_schema()
    report = Report()
    started = time.monotonic()
    # Hypothesis caches constants it reads from our modules under ./.hypothesis: not in the repo.
    with (
        tempfile.TemporaryDirectory(prefix="callagent-fuzz-") as home,
        requests.Session() as session,
    ):
        set_hypothesis_home_dir(home)
        try:
            for result in schema.get_all_operations():
                operation = result.ok()
                for mode in modes_for(operation, keys, seeds):
                    fuzz_operation(
                        operation, mode, base_url, session, examples, report, tuple(keys.values())
                    )
        finally:
            set_hypothesis_home_dir(None)
    report.seconds = time.monotonic() - started
    return report


def contract_operations() -> set[str]:
    """Every operation of the contract, labelled as the report labels them."""
    schema = load_schema()
    return {f"{r.ok().method.upper()} {r.ok().path}" for r in schema.get_all_operations()}
