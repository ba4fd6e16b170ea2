"""The shipped venues, pinned field by field as they were when they lived in Python code, so
moving them into scenario files cannot change how any of them behaves."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import tomllib
from typing import Any

import jsonschema
import pytest

from sim import main as sim_main
from sim import scenario_files
from sim.dialogue import Request
from sim.live_quirks import LiveQuirks
from sim.settings import SimSettings
from sim.venues import Answering, Booking, Manner, Say, VenueMind

TODAY = datetime.date(2025, 5, 1)
NOON, ELEVEN_PM = datetime.time(12, 0), datetime.time(23, 0)
BASE: dict[str, Any] = {
    "language": "en",
    "host": "Maria",
    "opens": NOON,
    "closes": ELEVEN_PM,
    "answering": Answering.HUMAN,
    "booking": Booking.AS_ASKED,
    "manner": Manner.POLITE,
    "max_party": 12,
    "offer_shift_min": 90,
    "refusal_reason": "we are fully booked that day",
    "ivr_digit": "1",
    # Added with the scenario files; their defaults keep today's behaviour.
    "closed_on": frozenset(),
    "ivr_prompt": None,
    "voicemail_greeting": None,
    "barge_in": None,
    "gemini": dataclasses.asdict(LiveQuirks()),  # Gemini's defaults, unless a venue cuts
}


def pinned(number: str, name: str, story: str, **changes: Any) -> dict[str, Any]:
    return {**BASE, "number": number, "name": name, "story": story, **changes}


SHIPPED = {
    v["number"]: v
    for v in (
        pinned(
            "+15550100",
            "Trattoria Roma",
            "books as asked",
            gemini=dataclasses.asdict(LiveQuirks(go_away_after_turn=1)),
        ),
        pinned(
            "+15550101",
            "Le Petit Bistro",
            "fully booked: refuses with a reason",
            booking=Booking.FULLY_BOOKED,
            refusal_reason="we are fully booked that evening",
        ),
        pinned(
            "+15550102",
            "Sakura Garden",
            "the asked time is taken; offers 90 minutes later (the agent asks the customer)",
            host="Kenji",
            booking=Booking.OFFERS_OTHER_TIME,
        ),
        pinned("+15550103", "Busy Bee Cafe", "the line is busy", answering=Answering.BUSY),
        pinned("+15550104", "Night Owl Diner", "nobody answers", answering=Answering.NO_ANSWER),
        pinned(
            "+15550105",
            "Harbour Fish House",
            "voicemail: greeting, beep, AMD machine_end_beep",
            answering=Answering.VOICEMAIL,
        ),
        pinned(
            "+15550106",
            "Grand Hotel Central",
            "IVR menu: press 1 for reservations, then a person books as asked",
            host="Oliver",
            answering=Answering.IVR,
        ),
        pinned(
            "+15550107",
            "Quick Grill",
            "hangs up mid-call right after hearing the request",
            host="Sam",
            manner=Manner.HANGS_UP,
        ),
        pinned(
            "+15550108",
            "Пельменная №1",
            "speaks Russian only; books as asked",
            language="ru",
            host="Ольга",
            gemini=dataclasses.asdict(LiveQuirks(close_after_turn=1, close_code=1011)),
        ),
        pinned(
            "+15550109",
            "Chatterbox Tapas",
            "talks over the agent (barge-in), then books as asked",
            host="Lola",
            manner=Manner.TALKS_OVER,
        ),
    )
}
DEFAULT = pinned("", "Corner Cafe", "any other number: books as asked", host="Alex")


def test_the_ten_venues_are_exactly_as_pinned() -> None:
    venues = scenario_files.shipped().venues
    assert {n: dataclasses.asdict(v) for n, v in venues.items()} == SHIPPED


def test_the_default_venue_is_as_pinned() -> None:
    assert dataclasses.asdict(scenario_files.shipped().default) == DEFAULT


def test_unknown_numbers_get_the_default_under_their_own_number() -> None:
    venue = scenario_files.venue_for("+15550150")
    assert dataclasses.asdict(venue) == {**DEFAULT, "number": "+15550150"}


# ---- the files themselves ----------------------------------------------------------------

SHIPPED_DIR = pathlib.Path(scenario_files.__file__).parent / "scenarios"
SHIPPED_FILES = sorted(SHIPPED_DIR.glob("*.toml"))

CLOSED_ON_FRIDAYS = """\
# Closed on Fridays: a booking for one is refused, any other day is booked as asked.
number = "+15550177"
name = "Friday Off Bistro"
story = "closed on Fridays; books any other day"
language = "en"
host = "Hugo"
answering = "human"
manner = "polite"

[hours]
opens = "17:00"
closes = "22:30"
closed_on = ["friday"]

[booking]
behaviour = "as_asked"
max_party = 6
"""


def write(folder: pathlib.Path, name: str, text: str) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(user_dir: pathlib.Path) -> scenario_files.ScenarioError:
    with pytest.raises(scenario_files.ScenarioError) as caught:
        scenario_files.load(user_dir)
    return caught.value


def test_the_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(scenario_files.schema())
    assert scenario_files.schema()["$schema"].endswith("/draft/2020-12/schema")


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=[p.name for p in SHIPPED_FILES])
def test_every_shipped_file_validates(path: pathlib.Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(scenario_files.schema()).validate(data)


def test_eleven_files_ship_and_the_package_finds_them() -> None:
    assert len(SHIPPED_FILES) == 11
    names = {f.name for f in scenario_files.SHIPPED.iterdir()}
    assert {p.name for p in SHIPPED_FILES} | {"scenario.schema.json"} <= names


def test_a_user_venue_is_answered_by_venue_for(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "friday-off.toml", CLOSED_ON_FRIDAYS)
    scenarios = scenario_files.load(tmp_path)
    venue = scenarios.venue_for("+15550177")
    assert venue.name == "Friday Off Bistro" and venue.host == "Hugo"
    assert venue.closed_on == frozenset({4}) and venue.max_party == 6
    assert (venue.opens, venue.closes) == (datetime.time(17), datetime.time(22, 30))
    assert len(scenarios.venues) == 11  # the ten shipped ones are still there
    assert scenarios.venue_for("+15550100").name == "Trattoria Roma"


def test_a_venue_closed_on_the_asked_day_refuses_and_books_other_days(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, "friday-off.toml", CLOSED_ON_FRIDAYS)
    venue = scenario_files.load(tmp_path).venue_for("+15550177")
    friday, saturday = datetime.date(2025, 5, 2), datetime.date(2025, 5, 3)
    ask = Request(friday, datetime.time(19), 2, "Anna")
    refusal = VenueMind(venue, friday).hear("request", "en", ask.as_data())
    assert [(r.act, r.data) for r in refusal if isinstance(r, Say)] == [
        ("refuse", {"reason": "we are closed on Fridays"})
    ]
    ask = dataclasses.replace(ask, date=saturday)
    booked = VenueMind(venue, friday).hear("request", "en", ask.as_data())
    assert [r.act for r in booked if isinstance(r, Say)] == ["confirm"]


def test_a_user_file_with_a_shipped_number_replaces_it(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "roma.toml", CLOSED_ON_FRIDAYS.replace("+15550177", "+15550100"))
    scenarios = scenario_files.load(tmp_path)
    assert scenarios.venue_for("+15550100").name == "Friday Off Bistro"
    assert len(scenarios.venues) == 10


def test_a_user_default_replaces_the_shipped_default(tmp_path: pathlib.Path) -> None:
    text = CLOSED_ON_FRIDAYS.replace('number = "+15550177"', "default = true")
    write(tmp_path, "my-default.toml", text)
    venue = scenario_files.load(tmp_path).venue_for("+15550150")
    assert venue.name == "Friday Off Bistro" and venue.number == "+15550150"


def test_the_texts_a_file_gives_are_what_the_venue_says(tmp_path: pathlib.Path) -> None:
    text = CLOSED_ON_FRIDAYS.replace('answering = "human"', 'answering = "ivr"')
    text += '\n[ivr]\ndigit = "3"\nprompt = "Press 3 to book."\n'
    write(tmp_path, "ivr.toml", text)
    mind = VenueMind(scenario_files.load(tmp_path).venue_for("+15550177"), TODAY)
    assert [(r.act, r.text) for r in mind.opening() if isinstance(r, Say)] == [
        ("ivr_menu", "Press 3 to book.")
    ]
    mind.on_digits("3")
    assert [r.act for r in mind.opening() if isinstance(r, Say)] == ["greeting"]


# ---- refused files -----------------------------------------------------------------------


def test_a_toml_syntax_error_names_the_file_and_the_line(tmp_path: pathlib.Path) -> None:
    bad = write(tmp_path, "bad.toml", CLOSED_ON_FRIDAYS.replace('host = "Hugo"', "host = Hugo"))
    error = refused(tmp_path)
    assert (error.file, error.line) == (str(bad), 6)
    assert str(error).startswith(f"{bad}:6: not valid TOML: ")


def test_a_schema_violation_names_the_file_the_key_path_the_line_and_why(
    tmp_path: pathlib.Path,
) -> None:
    bad = write(tmp_path, "bad.toml", CLOSED_ON_FRIDAYS.replace('"22:30"', '"25:00"'))
    error = refused(tmp_path)
    assert (error.file, error.path, error.line) == (str(bad), "hours.closes", 12)
    assert str(error) == f"{bad}:12: hours.closes: '25:00' does not match " + repr(
        scenario_files.schema()["$defs"]["clock"]["pattern"]
    )


def test_an_unknown_key_is_refused_where_it_is_written(tmp_path: pathlib.Path) -> None:
    bad = write(tmp_path, "bad.toml", CLOSED_ON_FRIDAYS + "deposit = 20\n")
    error = refused(tmp_path)
    assert (error.file, error.path, error.line) == (str(bad), "booking.deposit", 18)
    assert error.reason == "unknown key 'deposit'"


def test_a_bad_enum_value_is_refused(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "bad.toml", CLOSED_ON_FRIDAYS.replace('"friday"', '"fryday"'))
    error = refused(tmp_path)
    assert (error.path, error.line) == ("hours.closed_on.0", 13)
    assert "'fryday' is not one of" in error.reason


def test_a_missing_key_is_refused(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "bad.toml", CLOSED_ON_FRIDAYS.replace('host = "Hugo"\n', ""))
    assert refused(tmp_path).reason == "'host' is a required property"


def test_a_number_not_in_e164_is_refused(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "bad.toml", CLOSED_ON_FRIDAYS.replace("+15550177", "555-0177"))
    error = refused(tmp_path)
    assert (error.path, error.line) == ("number", 2)


def test_hours_that_close_before_they_open_are_refused(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "bad.toml", CLOSED_ON_FRIDAYS.replace('"22:30"', '"09:00"'))
    error = refused(tmp_path)
    assert (error.path, error.line, error.reason) == (
        "hours",
        12,
        "closes must be later than opens",
    )


def test_two_user_files_with_one_number_are_refused(tmp_path: pathlib.Path) -> None:
    first = write(tmp_path, "a.toml", CLOSED_ON_FRIDAYS)
    second = write(tmp_path, "b.toml", CLOSED_ON_FRIDAYS.replace("Friday Off", "Other"))
    error = refused(tmp_path)
    assert error.file == str(second)
    assert error.reason == f"number +15550177 is already used by {first}"


def test_two_user_defaults_are_refused(tmp_path: pathlib.Path) -> None:
    text = CLOSED_ON_FRIDAYS.replace('number = "+15550177"', "default = true")
    write(tmp_path, "a.toml", text)
    write(tmp_path, "b.toml", text)
    assert refused(tmp_path).reason.startswith("a second default venue")


def test_a_default_venue_with_a_number_is_refused(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "bad.toml", "default = true\n" + CLOSED_ON_FRIDAYS)
    error = refused(tmp_path)
    assert (error.path, error.reason) == ("number", "the default venue takes no number")


def test_a_scenarios_dir_that_is_not_a_folder_is_refused(tmp_path: pathlib.Path) -> None:
    assert "not a folder" in refused(tmp_path / "missing").reason


def test_the_sim_refuses_to_start_on_a_bad_file(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = write(tmp_path, "bad.toml", CLOSED_ON_FRIDAYS.replace('host = "Hugo"', "host = Hugo"))
    monkeypatch.setenv("SIM_SCENARIOS_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as caught:
        sim_main.main()
    assert str(caught.value.code).startswith(f"sim: scenario file refused: {bad}:6: ")


def test_an_empty_scenarios_dir_setting_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_SCENARIOS_DIR", "")
    assert SimSettings().sim_scenarios_dir is None
    monkeypatch.setenv("SIM_SCENARIOS_DIR", "my-venues")
    assert SimSettings().sim_scenarios_dir == pathlib.Path("my-venues")


def test_a_bad_value_in_an_inline_table_points_at_its_line(tmp_path: pathlib.Path) -> None:
    text = CLOSED_ON_FRIDAYS.replace('[booking]\nbehaviour = "as_asked"\nmax_party = 6\n', "")
    inline = 'manner = "polite"\nbooking = { behaviour = "as_asked", max_party = 0 }\n'
    write(tmp_path, "bad.toml", text.replace('manner = "polite"\n', inline))
    error = refused(tmp_path)
    assert (error.path, error.line) == ("booking.max_party", 9)
    assert error.reason == "0 is less than the minimum of 1"


def test_a_file_that_is_not_utf8_is_refused(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(CLOSED_ON_FRIDAYS.replace("Hugo", "Hélène").encode("latin-1"))
    error = refused(tmp_path)
    assert error.file == str(bad) and error.reason.startswith("cannot be read: ")


GEMINI_VENUE = """\
number = "+15550190"
name = "Flaky Line Bistro"
story = "the model's connection is cut twice: goAway, then an internal error"
language = "en"
host = "Ines"
answering = "human"
manner = "polite"

[hours]
opens = "12:00"
closes = "23:00"

[booking]
behaviour = "as_asked"

[gemini]
go_away_after_turn = 1
go_away_time_left_s = 1.5
close_after_turn = 2
close_code = {code}
"""


def test_a_gemini_table_switches_the_model_connection_cuts_on() -> None:
    venue, _ = scenario_files.parse("flaky.toml", GEMINI_VENUE.format(code=1011))
    assert venue.gemini == LiveQuirks(
        go_away_after_turn=1, go_away_time_left_s=1.5, close_after_turn=2, close_code=1011
    )
    assert venue.gemini.close_reason == "Internal error encountered."


def test_a_close_code_google_does_not_use_is_refused_with_its_line() -> None:
    with pytest.raises(scenario_files.ScenarioError) as refused:
        scenario_files.parse("flaky.toml", GEMINI_VENUE.format(code=4000))
    assert refused.value.path == "gemini.close_code" and refused.value.line == 20
