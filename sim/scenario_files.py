"""The simulated venues as data: TOML scenario files, checked, turned into `Venue`s.

The shipped files live in `sim/scenarios/` (package data, found through importlib.resources
so an installed wheel finds them too); `SIM_SCENARIOS_DIR` adds a user's own on top, and a
user file with a shipped file's number replaces it (a user `default = true` file replaces the
shipped default). Every file is checked against `sim/scenarios/scenario.schema.json` (JSON
Schema draft 2020-12, with the `jsonschema` library) before anything reads it, so a mistake
stops the sim at start-up with the file, the line and the reason instead of surfacing
mid-call. docs/simulator.md describes the format.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.resources
import json
import pathlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions

from sim.live_quirks import LiveQuirks
from sim.venues import Answering, Booking, Manner, Venue

SHIPPED = importlib.resources.files("sim") / "scenarios"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class ScenarioError(Exception):
    """A scenario file the sim refuses; `str()` is the whole message: file, line, reason."""

    def __init__(self, file: str, reason: str, *, line: int | None = None, path: str = "") -> None:
        self.file, self.line, self.path, self.reason = file, line, path, reason
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {path + ': ' if path else ''}{reason}")


@dataclasses.dataclass(frozen=True, slots=True)
class Scenarios:
    """Who answers which number: the venues by E.164 number, and the default for the rest."""

    venues: Mapping[str, Venue]
    default: Venue

    def venue_for(self, number: str) -> Venue:
        """The venue answering `number`; unknown numbers get the default, under that number."""
        found = self.venues.get(number)
        if found is not None:
            return found
        return dataclasses.replace(self.default, number=number)


@functools.cache
def schema() -> dict[str, Any]:
    """The scenario JSON Schema that ships with the sim."""
    loaded: dict[str, Any] = json.loads((SHIPPED / "scenario.schema.json").read_text("utf-8"))
    return loaded


@functools.cache
def shipped() -> Scenarios:
    """The ten shipped venues and the default café."""
    return load(None)


def venue_for(number: str) -> Venue:
    """The shipped venue answering `number` (tests and tools that take no user files)."""
    return shipped().venue_for(number)


def load(user_dir: pathlib.Path | None) -> Scenarios:
    """The shipped scenarios, with the files in `user_dir` (if any) on top.

    Raises:
        ScenarioError: a file does not parse or validate, a number or the default appears
            twice among the files of one folder, or `user_dir` is not a folder.
    """
    shipped_files = [
        (f"sim/scenarios/{f.name}", f.read_text("utf-8"))
        for f in SHIPPED.iterdir()
        if f.name.endswith(".toml")
    ]
    venues, default = _layer(shipped_files)
    if default is None:
        raise ScenarioError("sim/scenarios", "no shipped file has default = true")
    if user_dir is not None:
        if not user_dir.is_dir():
            raise ScenarioError(str(user_dir), "SIM_SCENARIOS_DIR is not a folder")
        files = [(str(p), _read(p)) for p in sorted(user_dir.glob("*.toml"))]
        user_venues, user_default = _layer(files)
        venues = {**venues, **user_venues}
        default = user_default or default
    return Scenarios(venues, default)


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), f"cannot be read: {exc}") from None


def _layer(files: Iterable[tuple[str, str]]) -> tuple[dict[str, Venue], Venue | None]:
    """One folder's venues; a number (or the default) claimed twice in it is refused."""
    venues: dict[str, Venue] = {}
    origin: dict[str, str] = {}
    default: tuple[str, Venue] | None = None
    for file, text in sorted(files):
        venue, is_default = parse(file, text)
        if is_default:
            if default is not None:
                raise ScenarioError(file, f"a second default venue (the first is {default[0]})")
            default = (file, venue)
        elif venue.number in venues:
            first = origin[venue.number]
            raise ScenarioError(file, f"number {venue.number} is already used by {first}")
        else:
            venues[venue.number], origin[venue.number] = venue, file
    return venues, default[1] if default else None


def parse(file: str, text: str) -> tuple[Venue, bool]:
    """One scenario file's venue, and whether it is the default (`file` names it in errors).

    Raises:
        ScenarioError: TOML syntax (with its line), a schema violation (key path, and the
            line where that key is written), or hours that close before they open.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _decode_line(exc)
        raise ScenarioError(file, f"not valid TOML: {exc}", line=line) from None
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        path = [str(p) for p in error.absolute_path]
        reason = error.message
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            path.append(extra[0])
            reason = f"unknown key {extra[0]!r}"
        elif error.validator == "not" and path == [] and "number" in data:
            path, reason = ["number"], "the default venue takes no number"
        dotted = ".".join(path)
        raise ScenarioError(file, reason, line=_line_of(text, path), path=dotted)
    venue = _venue(data)
    if venue.closes <= venue.opens:
        reason = "closes must be later than opens"
        raise ScenarioError(file, reason, line=_line_of(text, ["hours", "closes"]), path="hours")
    return venue, bool(data.get("default", False))


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(schema())


def _venue(data: dict[str, Any]) -> Venue:
    """The `Venue` a validated file describes; keys a file leaves out keep `Venue`'s defaults."""
    hours, booking = data["hours"], data["booking"]
    fields: dict[str, Any] = {
        "number": data.get("number", ""),
        "name": data["name"],
        "story": data["story"],
        "language": data["language"],
        "host": data["host"],
        "opens": _clock(hours["opens"]),
        "closes": _clock(hours["closes"]),
        "closed_on": frozenset(WEEKDAYS.index(d) for d in hours.get("closed_on", ())),
        "answering": Answering(data["answering"]),
        "manner": Manner(data["manner"]),
        "booking": Booking(booking["behaviour"]),
    }
    optional = {
        "max_party": booking.get("max_party"),
        "refusal_reason": booking.get("refusal_reason"),
        "offer_shift_min": booking.get("offer_shift_min"),
        "ivr_digit": data.get("ivr", {}).get("digit"),
        "ivr_prompt": data.get("ivr", {}).get("prompt"),
        "voicemail_greeting": data.get("voicemail", {}).get("greeting"),
        "barge_in": data.get("barge_in"),
        "gemini": LiveQuirks.from_table(data["gemini"]) if "gemini" in data else None,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return Venue(**fields)


def _clock(text: str) -> datetime.time:
    return datetime.time.fromisoformat(text)


def _decode_line(exc: tomllib.TOMLDecodeError) -> int | None:
    # Python 3.14 adds `lineno`; 3.11's message ends "(at line 3, column 7)".
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    found = re.search(r"at line (\d+)", str(exc))
    return int(found.group(1)) if found else None


_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-\" ]+?)\s*=")


def _line_of(text: str, path: list[str]) -> int | None:
    """The line where the key at `path` is written, else where its nearest enclosing key or
    table is (an inline table, a `[table]` header); None if not found.

    A light scan of `[table]` headers and `key =` lines (dotted keys included): enough for
    the flat files the schema allows, and only ever used to point at an error.
    """
    keys = [p for p in path if not p.isdigit()]  # an array item is reported at its key
    if not keys:
        return None
    table: list[str] = []
    nearest: tuple[int, int] | None = None  # (depth matched, line)
    for number, line in enumerate(text.splitlines(), start=1):
        if found := _TABLE.match(line):
            table = _split_key(found.group(1))
            written = table
        elif found := _KEY.match(line):
            written = table + _split_key(found.group(1))
        else:
            continue
        if written == keys and not _TABLE.match(line):
            return number
        if keys[: len(written)] == written and (nearest is None or len(written) > nearest[0]):
            nearest = (len(written), number)
    return nearest[1] if nearest else None


def _split_key(key: str) -> list[str]:
    return [part.strip().strip('"') for part in key.split(".")]
