"""Word alignment from phoneme units and their durations (no model: units written by hand)."""

# ruff: noqa: RUF001  (IPA letters that look like ASCII are the data under test)

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voices.alignment import WordAligner, sounds, spread, word_spans
from voices.engine import WordTiming


def units(phonemes: str) -> list[str]:
    """A sentence the way Piper reports it: BOS, one unit per character, EOS."""
    return ["^", *phonemes, "$"]


def align(
    text: str, expected: list[str], sentences: list[str], durations: list[list[int]]
) -> list[tuple[int, int, tuple[WordTiming, ...]]]:
    aligner = WordAligner(word_spans(text), expected, [units(s) for s in sentences])
    out = []
    offset = 0
    for index, sentence_durations in enumerate(durations):
        out.append(aligner.sentence(index, sentence_durations, offset))
        offset += sum(sentence_durations)
    return out


def spoken(text: str, timings: tuple[WordTiming, ...]) -> list[tuple[str, int, int]]:
    return [(text[w.text_start : w.text_end], w.sample_start, w.sample_end) for w in timings]


def test_word_spans_and_sounds() -> None:
    assert word_spans("  Hi, you  there ") == [(2, 5), (6, 9), (11, 16)]
    assert sounds("həlˈoʊ, wˈɜːld!") == "həloʊwɜld"
    assert spread(10, 3) == [4, 3, 3]
    assert spread(5, 0) == []


def test_each_word_runs_from_its_first_phoneme_to_the_next_word() -> None:
    text = "Hello world."
    sentence = "həlˈoʊ wˈɜːld."  # 14 units + BOS + EOS
    durations = [100] + [10] * 14 + [50]
    [(start, end, words)] = align(text, ["həlˈoʊ", "wˈɜːld."], [sentence], [durations])
    # BOS belongs to the first word; "world" starts at its "w" (unit 8 after BOS)
    assert spoken(text, words) == [("Hello", 0, 170), ("world.", 170, 290)]
    assert (start, end) == (0, 12)


def test_a_word_read_as_several_words_gets_all_of_them() -> None:
    text = "It costs 3.5 now"
    sentence = "ɪt kˈɔsts θɹˈiː pɔɪnt fˈaɪv nˈaʊ"
    durations = [0] + [10] * len(sentence) + [0]
    [(_, _, words)] = align(
        text, ["ɪt", "kˈɔsts", "θɹˈiː pɔɪnt fˈaɪv", "nˈaʊ"], [sentence], [durations]
    )
    names = [name for name, _, _ in spoken(text, words)]
    lengths = [w.sample_end - w.sample_start for w in words]
    assert names == ["It", "costs", "3.5", "now"]
    assert lengths[2] > 2 * lengths[1]


def test_words_run_together_by_the_phonemizer_are_still_told_apart() -> None:
    text = "dollars... really?"
    sentence = "dˈɑːlɚzɹˈiəli?"  # espeak dropped the space
    durations = [0] + [10] * len(sentence) + [0]
    [(_, _, words)] = align(text, ["dˈɑːlɚz", "ɹˈiəli?"], [sentence], [durations])
    assert spoken(text, words) == [("dollars...", 0, 70), ("really?", 70, 140)]


def test_a_silent_word_takes_no_time() -> None:
    text = "big - very big"
    sentence = "bˈɪɡ vˈɛɹi bˈɪɡ"
    durations = [0] + [10] * len(sentence) + [0]
    [(_, _, words)] = align(text, ["bˈɪɡ", "", "vˈɛɹi", "bˈɪɡ"], [sentence], [durations])
    assert spoken(text, words)[1] == ("-", 50, 50)
    assert spoken(text, words)[2][1] == 50


def test_words_belong_to_the_sentence_that_speaks_them() -> None:
    text = "Hello, Dr. Smith!"
    sentences = ["həlˈoʊ, dˈɑːktɚ.", "smˈɪθ!"]
    durations = [[5] + [10] * len(sentences[0]) + [5], [5] + [10] * len(sentences[1]) + [5]]
    (s1, e1, _), (s2, e2, second) = align(
        text, ["həlˈoʊ", "dˈɑːktɚ.", "smˈɪθ!"], sentences, durations
    )
    total_first = sum(durations[0])
    assert text[s1:e1] == "Hello, Dr."
    assert text[s2:e2] == "Smith!"
    assert [w.sample_start for w in second] == [total_first]
    assert second[-1].sample_end == total_first + sum(durations[1])


def test_a_sentence_without_words_has_an_empty_span() -> None:
    aligner = WordAligner([], [], [units("hm")])
    assert aligner.sentence(0, [1, 2, 3, 4], 100) == (0, 0, ())


def test_nothing_matches_so_units_are_shared_by_word_length() -> None:
    text = "aaaa bb"
    [(_, _, words)] = align(text, ["xxxx", "yy"], ["zzzzzz"], [[0] + [10] * 6 + [0]])
    assert spoken(text, words) == [("aaaa", 0, 40), ("bb", 40, 60)]


def test_durations_must_match_the_units() -> None:
    aligner = WordAligner([(0, 2)], ["hɪ"], [units("hɪ")])
    with pytest.raises(ValueError, match="4 units"):
        aligner.sentence(0, [1, 2], 0)
    with pytest.raises(ValueError, match="one expected"):
        WordAligner([(0, 2)], [], [])


_PHONEMES = st.text(alphabet="abcdəɪˈ ,.", max_size=12)


@settings(deadline=None)
@given(
    st.lists(_PHONEMES, min_size=1, max_size=8),
    st.lists(st.text(alphabet="abcdxyə ,.", min_size=1, max_size=20), min_size=1, max_size=4),
    st.data(),
)
def test_timings_tile_every_sentence_in_text_order(
    expected: list[str], sentences: list[str], data: st.DataObject
) -> None:
    text = " ".join(f"w{i}" for i in range(len(expected)))
    aligner = WordAligner(word_spans(text), expected, [units(s) for s in sentences])
    offset = 0
    seen: list[WordTiming] = []
    for index, sentence in enumerate(sentences):
        size = len(sentence) + 2  # with BOS and EOS
        durations = data.draw(st.lists(st.integers(0, 50), min_size=size, max_size=size))
        _, _, words = aligner.sentence(index, durations, offset)
        if words:
            assert words[0].sample_start == offset
            assert words[-1].sample_end == offset + sum(durations)
        for before, after in itertools.pairwise(words):
            assert before.sample_end == after.sample_start
        for word in words:
            assert word.sample_start <= word.sample_end
        seen.extend(words)
        offset += sum(durations)
    # every word is spoken exactly once, in text order
    assert [w.text_start for w in seen] == [start for start, _ in word_spans(text)]
