"""Numbers, times, dates and yes/no in transcripts: golden tables."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.dialogue.parsing import (
    find_dates,
    find_numbers,
    find_times,
    normalize,
    parse_yes_no,
    tokenize,
)

TODAY = dt.date(2025, 3, 5)  # a Wednesday


def tokens(text: str):  # type: ignore[no-untyped-def]
    return tokenize(normalize(text))


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("four", [4]),
        ("a party of 4", [4]),
        ("twenty five people", [25]),
        ("twenty-five", [25]),
        ("one hundred", [100]),
        ("2 adults and 3 children", [2, 3]),
        ("no numbers here", []),
        ("the 3rd", []),  # an ordinal is not a count
    ],
)
def test_numbers_in_words_and_digits(text: str, numbers: list[int]) -> None:
    assert [m.value for m in find_numbers(tokens(text))] == numbers


@pytest.mark.parametrize(
    ("text", "value", "meridiem", "strength"),
    [
        ("8pm", (8, 0), "pm", 2),
        ("8 p.m.", (8, 0), "pm", 2),
        ("at 8 PM", (8, 0), "pm", 2),
        ("7 a.m.", (7, 0), "am", 2),
        ("19:30", (19, 30), None, 2),
        ("7.30pm", (7, 30), "pm", 2),
        ("half past seven", (7, 30), None, 2),
        ("quarter past 7", (7, 15), None, 2),
        ("quarter to eight", (7, 45), None, 2),
        ("ten past six", (6, 10), None, 2),
        ("twenty to nine", (8, 40), None, 2),
        ("seven thirty", (7, 30), None, 2),
        ("seven oh five", (7, 5), None, 2),
        ("8 o'clock", (8, 0), None, 2),
        ("noon", (12, 0), "pm", 2),
        ("midnight", (0, 0), "am", 2),
        ("at 8", (8, 0), None, 1),
        ("around nine", (9, 0), None, 1),
        ("8 in the evening", (8, 0), "pm", 1),
        ("tomorrow night at 8", (8, 0), "pm", 1),
        ("at 9 in the morning", (9, 0), "am", 1),
        ("eight", (8, 0), None, 0),
    ],
)
def test_times(text: str, value: tuple[int, int], meridiem: str | None, strength: int) -> None:
    (mention,) = find_times(tokens(text))
    assert (mention.value, mention.meridiem, mention.strength) == (value, meridiem, strength)


def test_am_is_a_meridiem_only_right_after_the_time() -> None:
    (mention,) = find_times(tokens("I am free at 8"))
    assert mention.meridiem is None


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("today", "2025-03-05"),
        ("tonight", "2025-03-05"),
        ("tomorrow", "2025-03-06"),
        ("the day after tomorrow", "2025-03-07"),
        ("wednesday", "2025-03-05"),
        ("next wednesday", "2025-03-12"),
        ("on friday", "2025-03-07"),
        ("this friday", "2025-03-07"),
        ("monday", "2025-03-10"),
        ("march 3rd", "2026-03-03"),  # already past this year: next year's
        ("march the twentieth", "2025-03-20"),
        ("the 21st of march", "2025-03-21"),
        ("march twenty first", "2025-03-21"),
        ("3 april", "2025-04-03"),
        ("april 3 2026", "2026-04-03"),
        ("the 15th", "2025-03-15"),
        ("the 2nd", "2025-04-02"),
        ("in 3 days", "2025-03-08"),
        ("in a week", "2025-03-12"),
    ],
)
def test_dates_relative_to_today(text: str, date: str) -> None:
    (mention,) = find_dates(tokens(text), TODAY)
    assert mention.value.isoformat() == date


@pytest.mark.parametrize(
    "text", ["february 30th", "may I book", "the first thing", "just a second"]
)
def test_words_that_are_not_dates(text: str) -> None:
    assert find_dates(tokens(text), TODAY) == []


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes", True),
        ("Yeah, that's right.", True),
        ("sure, go ahead", True),
        ("sounds good", True),
        ("no problem", True),
        ("no", False),
        ("nope", False),
        ("no, make it three people", False),
        ("that's not right", False),
        ("yes, no wait", False),
        ("I'm not sure", None),
        ("hmm", None),
        ("what time is it", None),
    ],
)
def test_yes_and_no(text: str, answer: bool | None) -> None:
    assert parse_yes_no(tokens(text)) is answer


@given(st.text(max_size=80))
def test_any_text_parses_without_error(text: str) -> None:
    found = tokens(text)
    find_times(found)
    find_dates(found, TODAY)
    find_numbers(found)
    parse_yes_no(found)
    assert len(normalize(text)) >= 0


@given(st.from_regex(r"[a-zA-Z0-9 .,:'?!-]{0,60}", fullmatch=True))
def test_normalizing_keeps_the_length_of_ascii_text(text: str) -> None:
    assert len(normalize(text)) == len(text)
