"""ReplyCap (sans-I/O): what of a reply may be spoken within ``limits.max_reply_chars``."""

from __future__ import annotations

import pytest

from agent.reply_limit import LOOKAHEAD, ReplyCap

SENTENCES = "One two. Three four five! Six seven? Eight nine ten."


def stream(cap: ReplyCap, pieces: list[str]) -> tuple[list[str], bool]:
    out = [cap.feed(p, final=False) for p in pieces]
    out.append(cap.feed("", final=True))
    return out, cap.cut


@pytest.mark.parametrize(
    ("limit", "spoken"),
    [
        (len(SENTENCES), SENTENCES),
        (len(SENTENCES) - 1, "One two. Three four five! Six seven?"),
        (9, "One two."),
        (8, "One two."),
        (7, "One"),  # no sentence end within the limit: whole words
        (2, ""),
    ],
)
def test_a_whole_reply_is_cut_at_the_last_sentence_end_within_the_limit(
    limit: int, spoken: str
) -> None:
    cap = ReplyCap(limit)
    assert cap.feed(SENTENCES, final=True) == spoken
    assert cap.cut == (spoken != SENTENCES)
    assert cap.feed("More.", final=True) == ""  # nothing after a cut


@pytest.mark.parametrize("size", [1, 3, 7, 100])
def test_a_stream_near_the_limit_is_released_by_whole_sentences(size: int) -> None:
    pieces = [SENTENCES[i : i + size] for i in range(0, len(SENTENCES), size)]
    out, cut = stream(ReplyCap(30), pieces)
    assert "".join(out) == "One two. Three four five!"
    assert cut


def test_a_stream_far_from_the_limit_is_released_as_it_comes() -> None:
    cap = ReplyCap(LOOKAHEAD + 100)
    assert cap.feed("Once upon", final=False) == "Once upon"
    assert cap.feed(" a time", final=False) == " a time"
    assert not cap.cut


def test_a_stream_with_no_sentence_end_within_the_limit_says_nothing_more() -> None:
    out, cut = stream(ReplyCap(10), ["a b c d e f g h i j k l m"])
    assert "".join(out) == ""
    assert cut


def test_ssml_is_spoken_whole_or_not_at_all() -> None:
    cap = ReplyCap(30)
    assert cap.fits_whole("<speak>Hi.</speak>")
    assert not cap.fits_whole("<speak>Too long now.</speak>")
    assert cap.cut
