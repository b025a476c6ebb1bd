"""Plain text into plans, and invalid SSML spoken as text."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidSSML
from voices.engine import Prosody, SpeechPlan, SpeechSegment, Style
from voices.ssml import (
    Limits,
    looks_like_ssml,
    parse_ssml_lenient,
    plan_from_text,
    strip_markup,
)


def test_plain_text_is_normalised() -> None:
    assert plan_from_text("Call me at 9:30 am, Dr. Who.") == SpeechPlan(
        (SpeechSegment("Call me at nine thirty a.m., Doctor Who."),)
    )


def test_inline_tags_become_styled_segments_and_leave_the_text() -> None:
    result = plan_from_text(
        "[happy] Great news! [sad:0.5]Sadly, it costs $5.[/] Anyway.", style=Style("calm")
    )
    assert [(s.text, s.style) for s in result.segments] == [
        ("Great news! ", Style("happy")),
        ("Sadly, it costs five dollars.", Style("sad", 0.5)),
        (" Anyway.", Style("calm")),
    ]
    assert "[" not in result.text


def test_request_settings_apply_to_every_segment() -> None:
    prosody = Prosody(rate=1.1)
    result = plan_from_text("One [excited] two", prosody=prosody, voice="amy", lang="en-US")
    assert {(s.prosody, s.voice, s.lang) for s in result.segments} == {(prosody, "amy", "en-US")}


def test_nothing_to_say_is_an_empty_plan() -> None:
    assert plan_from_text("  [happy]  ") == SpeechPlan(())


def test_brackets_that_are_not_tags_stay() -> None:
    text = "See [1] and [citation needed]."
    assert plan_from_text(text, normalize=False).text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<speak>Hi</speak>", True),
        ('  \n<?xml version="1.0"?><speak>Hi</speak>', True),
        ("Hi <break/> there", False),
        ("x < y", False),
    ],
)
def test_looks_like_ssml(text: str, expected: bool) -> None:
    assert looks_like_ssml(text) is expected


def test_markup_is_stripped_and_entities_decoded() -> None:
    assert strip_markup("<speak>Fish &amp;<break/>chips\n <b>now</b></speak>") == (
        "Fish & chips now"
    )


def test_valid_ssml_parses_without_error() -> None:
    plan, error = parse_ssml_lenient('<speak>Hi <break time="1s"/> there</speak>')
    assert error is None
    assert plan.segments[0].pause_ms == 1000


def test_invalid_ssml_is_spoken_without_markup_and_the_error_returned() -> None:
    plan, error = parse_ssml_lenient(
        '<speak>It costs $5 <prosody rate="warp">today</prosody>.</speak>', style=Style("happy")
    )
    assert isinstance(error, InvalidSSML)
    assert error.reason == "unknown rate 'warp'"
    assert plan == SpeechPlan(
        (SpeechSegment("It costs five dollars today .", style=Style("happy")),)
    )


def test_a_huge_invalid_document_is_cut_to_the_limit() -> None:
    plan, error = parse_ssml_lenient("<speak>" + "word " * 1000, limits=Limits(max_chars=100))
    assert error is not None
    assert len(plan.text) < 100
