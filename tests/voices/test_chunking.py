"""The clause chunker: golden cases, then properties over every way of splitting the text."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voices.chunking import ClauseChunker, TextChunk


def chunk_all(
    text: str, pieces: list[str] | None = None, *, min_clause_chars: int = 12, max_chars: int = 250
) -> list[TextChunk]:
    chunker = ClauseChunker(min_clause_chars=min_clause_chars, max_chars=max_chars)
    chunks: list[TextChunk] = []
    for piece in pieces if pieces is not None else [text]:
        chunks.extend(chunker.feed(piece))
    chunks.extend(chunker.flush())
    return chunks


def texts(text: str, max_chars: int = 250) -> list[str]:
    return [chunk.text for chunk in chunk_all(text, max_chars=max_chars)]


GOLDEN = [
    # the first chunk ends at a clause, later ones at sentences
    (
        "Hello there, how are you today? I am fine, thanks. Bye.",
        ["Hello there,", "how are you today?", "I am fine, thanks.", "Bye."],
    ),
    # a clause shorter than min_clause_chars does not end the first chunk
    (
        "Sure, I can help with that. Anything else?",
        ["Sure, I can help with that.", "Anything else?"],
    ),
    # abbreviations and initials do not end sentences
    (
        "Dr. Smith met Mr. J. R. Jones at 5 p.m. today. Fine.",
        ["Dr. Smith met Mr. J. R. Jones at 5 p.m. today.", "Fine."],
    ),
    ("Bring fruit, e.g. apples. Thanks!", ["Bring fruit,", "e.g. apples.", "Thanks!"]),
    # decimals, thousands and addresses have no whitespace after the mark
    (
        "It costs 3.5 dollars, or 3,000 cents. See example.com now.",
        ["It costs 3.5 dollars,", "or 3,000 cents.", "See example.com now."],
    ),
    # an ellipsis ends a sentence unless the next word goes on in lower case
    ("Well... I think so. Wait... what?", ["Well...", "I think so.", "Wait... what?"]),
    # runs of marks and closing quotes stay with their sentence
    ('He said "Stop!" Then?! "Yes."', ['He said "Stop!"', "Then?!", '"Yes."']),
    # a sentence mark before a lower-case word does not end a sentence
    ("Really? she asked. OK.", ["Really? she asked.", "OK."]),
    # line breaks end chunks (lists, paragraphs)
    ("Options:\n- one\n- two\n\nDone", ["Options:", "- one", "- two", "Done"]),
    # only a dash with spaces around it parts clauses
    (
        "A well-known place - very well known. Yes.",
        ["A well-known place -", "very well known.", "Yes."],
    ),
    # the end of the text ends the last chunk, whatever it is
    ("No final mark here", ["No final mark here"]),
    ("Trailing comma,", ["Trailing comma,"]),
    ("   ", []),
    ("", []),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN)
def test_golden_chunks(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


@pytest.mark.parametrize(("text", "expected"), GOLDEN)
def test_golden_chunks_one_character_at_a_time(text: str, expected: list[str]) -> None:
    assert [c.text for c in chunk_all(text, list(text))] == expected


def test_a_complete_sentence_comes_out_before_the_text_ends() -> None:
    chunker = ClauseChunker()
    assert chunker.feed("Hello there") == []
    assert chunker.feed(". How") == [TextChunk("Hello there.", 0, 12)]
    assert chunker.pending == " How"


def test_a_mark_waits_for_the_next_word_to_decide() -> None:
    chunker = ClauseChunker()
    assert chunker.feed("I met Dr.") == []
    assert chunker.feed(" ") == []  # "Dr." or the end of a sentence? The next word decides.
    assert chunker.feed("Smith. He") == [TextChunk("I met Dr. Smith.", 0, 16)]


def test_long_sentences_are_cut_at_a_clause_or_a_space() -> None:
    sentence = "one two three, four five six seven eight nine ten eleven twelve thirteen."
    assert texts(sentence, max_chars=30) == [
        "one two three,",
        "four five six seven eight",
        "nine ten eleven twelve",
        "thirteen.",
    ]
    assert texts("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_offsets_point_into_the_whole_text() -> None:
    text = "  First one here, then more.  Second.  "
    for chunk in chunk_all(text):
        assert text[chunk.start : chunk.end] == chunk.text


def test_feed_after_flush_is_a_mistake() -> None:
    chunker = ClauseChunker()
    chunker.flush()
    assert chunker.flush() == []
    with pytest.raises(RuntimeError):
        chunker.feed("more")


# Text built from the pieces the rules care about, so that the properties meet them often.
_PIECES = st.sampled_from(
    [
        "Hello", "there", "Dr.", "Mr.", "e.g.", "3.5", "3,000", "J.", "U.S.A.", "ok",
        ".", ",", ";", ":", "!", "?", "...", "…", "?!", '"', "'", ")", "(", "-", " - ", "—",
        " ", " ", " ", "  ", "\n", "\t", "a", "B", "x" * 7,
    ]
)  # fmt: skip
_TEXT = st.lists(_PIECES, max_size=60).map("".join)


@st.composite
def split_text(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(_TEXT)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(split_text(), st.integers(1, 20), st.integers(8, 80))
def test_chunks_do_not_depend_on_how_the_text_arrives(
    case: tuple[str, list[str]], min_clause_chars: int, max_chars: int
) -> None:
    text, pieces = case
    whole = chunk_all(text, min_clause_chars=min_clause_chars, max_chars=max_chars)
    assert chunk_all(text, pieces, min_clause_chars=min_clause_chars, max_chars=max_chars) == whole


@settings(max_examples=400, deadline=None)
@given(split_text(), st.integers(8, 80))
def test_chunks_hold_the_whole_text_in_order(case: tuple[str, list[str]], max_chars: int) -> None:
    text, pieces = case
    chunks = chunk_all(text, pieces, max_chars=max_chars)
    assert re.sub(r"\s+", "", "".join(c.text for c in chunks)) == re.sub(r"\s+", "", text)
    end = 0
    for chunk in chunks:
        assert chunk.text
        assert chunk.text == chunk.text.strip()
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.start >= end
        end = chunk.end
