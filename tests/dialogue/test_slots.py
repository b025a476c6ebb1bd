"""Which value goes to which slot, and which values are allowed: golden tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import DialogueConfig, TimeSlot
from agent.dialogue.slots import SlotFiller, resolve_time

TODAY = dt.date(2025, 3, 5)  # a Wednesday
SLOTS = msgspec.yaml.decode(
    b"""
slots:
  - name: party_size
    type: number
    prompt: How many?
    min: 1
    max: 12
    units: [people, guests, of us]
    cues: [party of, table for, for]
    mentions: [people, party size]
  - {name: date, type: date, prompt: Which day?, max_days_ahead: 60, mentions: [day, date]}
  - {name: time, type: time, prompt: What time?, earliest: "12:00", latest: "22:00",
     mentions: [time]}
  - name: seating
    type: choice
    prompt: Inside or outside?
    choices: {inside: [indoors], terrace: [outside, patio, outdoors]}
  - {name: name, type: text, prompt: Your name?, mentions: [name], max_words: 4}
  - {name: kids, type: yes_no, prompt: Any children?, mentions: [children, kids]}
  - name: code
    type: text
    prompt: Your code?
    patterns: ['code(?: is)? (?P<value>[a-z]{2}\\d{2})']
""",
    type=DialogueConfig,
)
FILLER = SlotFiller(SLOTS.slots)
ALL = [slot.name for slot in SLOTS.slots]


def extract(text: str, expected: str | None = None, loose: bool = False) -> dict[str, Any]:
    found = FILLER.extract(text, ALL, today=TODAY, expected=expected, loose=loose)
    out = {k: _plain(v) for k, v in found.filled.items()}
    out.update({f"!{k}": _plain(v) for k, v in found.rejected.items()})
    return out


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date | dt.time) else value


@pytest.mark.parametrize(
    ("text", "expected", "loose", "values"),
    [
        # several values at once, in any order
        (
            "a table for four at 8pm tomorrow",
            None,
            False,
            {"party_size": 4, "time": "20:00:00", "date": "2025-03-06"},
        ),
        (
            "Book for 2 on Friday at half past seven, outside",
            None,
            False,
            {"party_size": 2, "date": "2025-03-07", "time": "19:30:00", "seating": "terrace"},
        ),
        ("for 8 at 8", None, False, {"party_size": 8, "time": "20:00:00"}),
        ("we're 4 people at 7", None, False, {"party_size": 4, "time": "19:00:00"}),
        # a bare number goes to the slot being asked for
        ("eight", "time", False, {"time": "20:00:00"}),
        ("eight", "party_size", False, {"party_size": 8}),
        ("at 8, four people please", "time", False, {"time": "20:00:00", "party_size": 4}),
        ("four", None, False, {}),
        # corrections
        ("no, make it three people", None, True, {"party_size": 3}),
        ("no, make it three", None, True, {"party_size": 3}),
        ("four, no, five people", "party_size", False, {"party_size": 5}),
        ("actually change the time to 9", None, True, {"time": "21:00:00"}),
        ("at 8, no, at 9", None, False, {"time": "21:00:00"}),
        # choices, yes/no, free text, patterns
        ("on the patio please", None, False, {"seating": "terrace"}),
        ("indoors", "seating", False, {"seating": "inside"}),
        ("yes, two kids", "kids", False, {"kids": True}),
        ("no children", None, False, {"kids": False}),
        ("It's John Smith", "name", False, {"name": "John Smith"}),
        ("my name is Ana-Maria Lopez.", "name", False, {"name": "Ana-Maria Lopez"}),
        ("change the name to Bob Jones", None, True, {"name": "Bob Jones"}),
        ("what time do you close?", "name", False, {}),
        ("my code is AB12", None, False, {"code": "AB12"}),
        # values heard but not allowed
        ("for 40 people", None, False, {"!party_size": 40}),
        ("at 7 in the morning", "time", False, {"!time": "07:00:00"}),
        ("at 11pm", None, False, {"!time": "23:00:00"}),
        ("december 25th", None, False, {"!date": "2025-12-25"}),
    ],
)
def test_values_go_to_the_right_slot(
    text: str, expected: str | None, loose: bool, values: dict[str, Any]
) -> None:
    assert extract(text, expected, loose) == values


def test_free_text_is_flagged_for_the_conversation_to_check() -> None:
    found = FILLER.extract("Maria", ALL, today=TODAY, expected="name")
    assert found.free_text
    found = FILLER.extract("for 3 people", ALL, today=TODAY, expected="name")
    assert not found.free_text
    assert found.filled == {"party_size": 3}


def test_a_slot_named_without_a_value_is_reported() -> None:
    found = FILLER.extract("no, the time", ALL, today=TODAY, loose=True)
    assert found.mentioned == ["time"]
    assert found.yes_no is False


@pytest.mark.parametrize(
    ("hours", "meridiem", "earliest", "latest", "expected"),
    [
        (8, None, "12:00", "22:00", dt.time(20, 0)),
        (8, None, "07:00", "18:00", dt.time(8, 0)),
        (3, None, "07:00", "18:00", dt.time(15, 0)),
        (8, None, None, None, dt.time(8, 0)),
        (8, "pm", None, None, dt.time(20, 0)),
        (12, "am", None, None, dt.time(0, 0)),
        (12, None, "12:00", "22:00", dt.time(12, 0)),
        (7, "am", "12:00", "22:00", dt.time(7, 0)),  # said so: kept (then rejected)
    ],
)
def test_hours_resolve_against_the_allowed_range(
    hours: int, meridiem: str | None, earliest: str | None, latest: str | None, expected: dt.time
) -> None:
    slot = TimeSlot(name="t", prompt="?", earliest=earliest, latest=latest)
    assert resolve_time(hours, 0, meridiem, slot) == expected


@given(st.text(max_size=80), st.sampled_from([None, *ALL]), st.booleans())
def test_any_utterance_is_read_without_error(text: str, expected: str | None, loose: bool) -> None:
    found = FILLER.extract(text, ALL, today=TODAY, expected=expected, loose=loose)
    assert set(found.filled).isdisjoint(found.rejected)
