"""The emotion vocabulary, its presets and Piper mapping, and inline tags in streamed text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voices.emotion import (
    MAX_TAG_CHARS,
    PRESETS,
    Expression,
    InlineTags,
    PiperSettings,
    StyleChange,
    expression,
    parse_style,
    piper_length_factor,
    piper_settings,
    split_tags,
)
from voices.engine import EMOTIONS, Prosody, Style


def test_every_emotion_has_a_preset_and_neutral_changes_nothing() -> None:
    assert set(PRESETS) == set(EMOTIONS)
    assert PRESETS["neutral"] == Expression()
    assert expression(None) == Expression()
    assert expression(Style("happy", 0.0)) == Expression()


def test_presets_differ_from_each_other() -> None:
    assert len(set(PRESETS.values())) == len(PRESETS)


def test_intensity_scales_each_factor_geometrically() -> None:
    full = expression(Style("excited"))
    half = expression(Style("excited", 0.5))
    double = expression(Style("excited", 2.0))
    assert half.rate == pytest.approx(full.rate**0.5)
    assert double.pitch == pytest.approx(full.pitch**2)
    assert expression(Style("whisper", 0.5)).whisper == 0.5
    assert expression(Style("whisper", 2.0)).whisper == 1.0


@pytest.mark.parametrize(
    ("name", "intensity", "style"),
    [
        ("happy", 1.0, Style("happy")),
        (" Cheerful ", 0.5, Style("happy", 0.5)),
        ("WHISPERING", 2.0, Style("whisper", 2.0)),
        ("default", 1.0, Style("neutral")),
    ],
)
def test_styles_by_name_and_synonym(name: str, intensity: float, style: Style) -> None:
    assert parse_style(name, intensity) == style


def test_unknown_styles_and_intensities_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown emotion 'bored'"):
        parse_style("bored")
    with pytest.raises(ValueError, match="outside 0-2"):
        parse_style("happy", 2.5)


def joe(prosody: Prosody, style: Style) -> PiperSettings:
    """Piper settings from the joe voice's defaults."""
    return piper_settings(prosody, style, length_scale=1.0, noise_scale=0.667, noise_w_scale=0.8)


def test_piper_takes_rate_as_length_and_variation_as_noise() -> None:
    settings = joe(Prosody(rate=1.25, pitch=1.1, volume=0.5), Style("sad"))
    sad = PRESETS["sad"]
    assert settings.length_scale == pytest.approx(piper_length_factor(1.0 / (1.25 * sad.rate)))
    assert settings.noise_scale == pytest.approx(0.667 * sad.variation)
    assert settings.noise_w_scale == pytest.approx(0.8 * sad.timing)
    assert settings.pitch == pytest.approx(1.1 * sad.pitch)
    assert settings.volume == pytest.approx(0.5 * sad.volume)
    assert settings.whisper == 0.0


def test_absolute_piper_knobs_win_over_the_style() -> None:
    prosody = Prosody(length_scale=2.0, noise_scale=0.0, noise_w_scale=0.0)
    settings = joe(prosody, Style("excited"))
    assert settings.length_scale == pytest.approx(
        2.0 * piper_length_factor(1 / PRESETS["excited"].rate)
    )
    assert (settings.noise_scale, settings.noise_w_scale) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("text", "clean", "changes"),
    [
        ("[happy] Hello!", "Hello!", [StyleChange(0, Style("happy"))]),
        ("Hi [sad] there", "Hi there", [StyleChange(3, Style("sad"))]),
        ("Hi[sad] there", "Hi there", [StyleChange(2, Style("sad"))]),
        (
            "A [excited:0.5]b[/excited] c",
            "A b c",
            [StyleChange(2, Style("excited", 0.5)), StyleChange(3, None)],
        ),
        ("[Calm=150%]x[/]", "x", [StyleChange(0, Style("calm", 1.5)), StyleChange(1, None)]),
        ("[ whisper ]psst", "psst", [StyleChange(0, Style("whisper"))]),
        ("See [1] or [bored] or [happy:9]", "See [1] or [bored] or [happy:9]", []),
        ("[[happy]", "[", [StyleChange(1, Style("happy"))]),
        ("Unclosed [happy", "Unclosed [happy", []),
        ("[/bored]x", "[/bored]x", []),
    ],
)
def test_tags(text: str, clean: str, changes: list[StyleChange]) -> None:
    assert split_tags(text) == (clean, changes)


def test_a_long_bracket_is_text_at_once() -> None:
    tags = InlineTags()
    assert tags.feed("Note [" + "x" * MAX_TAG_CHARS) == ["Note [" + "x" * MAX_TAG_CHARS]


def test_a_possible_tag_is_held_back_until_decided() -> None:
    tags = InlineTags()
    assert tags.feed("Well [ha") == ["Well "]
    assert tags.feed("ppy] yes") == [StyleChange(5, Style("happy")), "yes"]
    assert tags.feed(" [hm") == [" "]
    assert tags.flush() == ["[hm"]
    assert tags.offset == len("Well yes [hm")


TEXTS = st.lists(
    st.sampled_from(
        [
            "Hello",
            " ",
            "[happy]",
            "[sad:0.5]",
            "[/]",
            "[1]",
            "[",
            "]",
            "x",
            "[calm",
            ":",
            "0.5",
            "!",
        ]
    ),
    max_size=20,
).map("".join)


@given(TEXTS, st.data())
def test_streaming_gives_the_same_text_and_changes_however_the_text_is_split(
    text: str, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    tags = InlineTags()
    pieces: list[str | StyleChange] = []
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        pieces += tags.feed(text[start:end])
    pieces += tags.flush()
    clean = "".join(p for p in pieces if isinstance(p, str))
    changes = [p for p in pieces if isinstance(p, StyleChange)]
    assert (clean, changes) == split_tags(text)
    assert tags.offset == len(clean)


def test_the_length_factor_follows_the_measured_curve() -> None:
    assert piper_length_factor(1.0) == pytest.approx(1.0)
    assert piper_length_factor(1.34) == pytest.approx(1.5)
    assert piper_length_factor(0.1) == pytest.approx(0.4)  # Piper cannot go faster
    assert piper_length_factor(10.0) == pytest.approx(2.5)
    factors = [piper_length_factor(d / 10) for d in range(5, 25)]
    assert factors == sorted(factors)
