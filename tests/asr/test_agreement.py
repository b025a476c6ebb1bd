"""LocalAgreement: stable prefixes from successive hypotheses (sans-I/O, no model)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.asr.agreement import LocalAgreement

# Each case: the hypotheses of one utterance, and (stable, unstable) after each.
GOLDEN: list[tuple[str, list[tuple[str, str, str]]]] = [
    (
        "a growing utterance",
        [
            ("I would", "", "I would"),
            ("I would like", "I would", "like"),
            ("I would like to book", "I would like", "to book"),
            ("I would like to book a table.", "I would like to book", "a table."),
        ],
    ),
    (
        "the last word changes as more of it is heard",
        [
            ("What time do you own", "", "What time do you own"),
            ("What time do you open", "What time do you", "open"),
            ("What time do you open tomorrow?", "What time do you open", "tomorrow?"),
        ],
    ),
    (
        "case and punctuation do not break agreement; the newest spelling is kept",
        [
            ("hello there", "", "hello there"),
            ("Hello, there, how", "Hello, there,", "how"),
        ],
    ),
    (
        "a hypothesis that disagrees never changes the stable words; its tail still counts",
        [
            ("book a table", "", "book a table"),
            ("book a table for", "book a table", "for"),
            ("look at able for two", "book a table for", "two"),
            ("look at able for two people", "book a table for two", "people"),
        ],
    ),
    (
        "a hypothesis that drops a stable word keeps its tail aligned",
        [
            ("we had everything before us", "", "we had everything before us"),
            ("we had everything before us, we", "we had everything before us,", "we"),
            ("we everything before us, we had", "we had everything before us, we", "had"),
        ],
    ),
    (
        "a word of punctuation only does not end the stable part",
        [
            ("Well -", "", "Well -"),
            ("Well - maybe", "Well", "- maybe"),
        ],
    ),
    (
        "an empty hypothesis changes nothing stable",
        [
            ("yes", "", "yes"),
            ("", "", ""),
            ("yes", "", "yes"),
            ("yes please", "yes", "please"),
        ],
    ),
]


@pytest.mark.parametrize(("case", "steps"), GOLDEN, ids=[case for case, _ in GOLDEN])
def test_golden_sequences(case: str, steps: list[tuple[str, str, str]]) -> None:
    agreement = LocalAgreement()
    for hypothesis, stable, unstable in steps:
        partial = agreement.update(hypothesis)
        assert (partial.stable_text, partial.unstable_text) == (stable, unstable), hypothesis
        assert partial.text == " ".join(w for w in (stable, unstable) if w)


def test_depth_one_trusts_every_hypothesis_and_three_waits_longer() -> None:
    assert LocalAgreement(1).update("at once").stable_text == "at once"
    three = LocalAgreement(3)
    assert three.update("a b").stable == ()
    assert three.update("a b").stable == ()
    assert three.update("a b c").stable == ("a", "b")
    with pytest.raises(ValueError, match="depth"):
        LocalAgreement(0)


def test_reset_starts_a_new_utterance() -> None:
    agreement = LocalAgreement()
    agreement.update("one two")
    assert agreement.update("one two").stable == ("one", "two")
    agreement.reset()
    assert agreement.update("three").stable == ()


words = st.sampled_from(["a", "b", "c", "d", "A,", "b."])
hypotheses = st.lists(st.lists(words, max_size=8).map(" ".join), min_size=1, max_size=12)


@given(hypotheses, st.integers(1, 3))
def test_stable_words_are_never_retracted(texts: list[str], depth: int) -> None:
    agreement = LocalAgreement(depth)
    stable: tuple[str, ...] = ()
    for text in texts:
        partial = agreement.update(text)
        assert partial.stable[: len(stable)] == stable
        stable = partial.stable
        # the unstable part is always the end of the newest hypothesis
        tail = text.split()[len(text.split()) - len(partial.unstable) :]
        assert list(partial.unstable) == (tail if partial.unstable else [])


@given(st.lists(words, min_size=1, max_size=15), st.data())
def test_a_growing_utterance_becomes_stable_as_it_is(
    sentence: list[str], data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(sentence)), max_size=6)))
    agreement = LocalAgreement()
    for cut in [*cuts, len(sentence), len(sentence)]:
        partial = agreement.update(" ".join(sentence[:cut]))
        assert list(partial.stable) == sentence[: len(partial.stable)]
    assert list(partial.stable) == sentence
    assert partial.unstable == ()
