"""Reply templates: placeholders, spoken values, SSML escaping, JSON values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agent.dialogue.templates import (
    MISSING,
    Template,
    TemplateError,
    json_value,
    lookup,
    placeholders,
    spoken,
)

VALUES: dict[str, Any] = {
    "party_size": 4,
    "date": dt.date(2025, 3, 7),
    "time": dt.time(19, 30),
    "name": "O'Brien & <Sons>",
    "booking": {"reference": "B-12", "tables": [{"id": 7}]},
    "ok": True,
}


@pytest.mark.parametrize(
    ("template", "text"),
    [
        ("A table for {party_size}.", "A table for 4."),
        ("On {date} at {time}.", "On Friday, March 7 at 7:30 PM."),
        ("Reference {booking.reference}, table {booking.tables.0.id}.", "Reference B-12, table 7."),
        ("Missing: [{booking.nothing}]", "Missing: []"),
        ("{{literal}} {ok}", "{literal} yes"),
        ("no placeholders", "no placeholders"),
    ],
)
def test_values_are_written_as_spoken(template: str, text: str) -> None:
    assert Template(template).render(VALUES) == text


def test_ssml_replies_escape_their_values() -> None:
    rendered = Template("<speak>Hello {name}</speak>").render(VALUES, ssml=True)
    assert rendered == "<speak>Hello O&apos;Brien &amp; &lt;Sons&gt;</speak>"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (dt.time(12, 0), "noon"),
        (dt.time(0, 0), "midnight"),
        (dt.time(8, 0), "8 AM"),
        (dt.time(20, 5), "8:05 PM"),
        (dt.date(2026, 1, 1), "Thursday, January 1"),
        (3.0, "3"),
        (False, "no"),
        (None, ""),
        (MISSING, ""),
    ],
)
def test_spoken_forms(value: Any, said: str) -> None:
    assert spoken(value) == said


def test_a_lone_placeholder_keeps_the_json_type() -> None:
    assert Template("{party_size}").value(VALUES) == 4
    assert Template("{time}").value(VALUES) == "19:30"
    assert Template("{date}").value(VALUES) == "2025-03-07"
    assert Template("{nothing}").value(VALUES) is None
    assert Template("table {party_size}").value(VALUES) == "table 4"


def test_json_values() -> None:
    assert json_value(dt.datetime(2025, 3, 7, 19, 30)) == "2025-03-07T19:30"
    assert json_value({"a": 1}) == {"a": 1}


@pytest.mark.parametrize("text", ["{", "a } b", "{}", "{not valid}", "{1x}"])
def test_stray_braces_are_errors(text: str) -> None:
    with pytest.raises(TemplateError):
        placeholders(text)


def test_placeholders_in_order() -> None:
    assert placeholders("{a} and {b.c} and {{d}}") == ["a", "b.c"]


def test_lookup_walks_dicts_and_lists() -> None:
    assert lookup(VALUES, "booking.tables.0.id") == 7
    assert lookup(VALUES, "booking.tables.5.id") is MISSING
    assert lookup(VALUES, "party_size.x") is MISSING
