"""The translation benchmark's parallel set (bench/data/translation.tsv) is whole and usable.

Read as data (tests never import bench/, see test_layering.py): a header naming English,
French, German and Spanish, then at least 20 sentences with every language filled in, of the
length of a phone-call turn, each different from the others.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

PARALLEL = Path(__file__).resolve().parent.parent / "bench" / "data" / "translation.tsv"
LANGUAGES = {"en", "fr", "de", "es"}


def rows() -> list[dict[str, str]]:
    with PARALLEL.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))


def words(sentence: str) -> int:
    return len(re.findall(r"\w+(?:['-]\w+)*", sentence))


def test_the_parallel_set_has_at_least_20_sentences_in_all_four_languages() -> None:
    table = rows()
    assert len(table) >= 20
    for line, row in enumerate(table, start=2):
        assert set(row) == LANGUAGES, (line, row)
        assert all(cell and cell.strip() == cell for cell in row.values()), (line, row)


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_sentence_is_a_short_turn_and_none_repeats(language: str) -> None:
    sentences = [row[language] for row in rows()]
    assert len(set(sentences)) == len(sentences)
    for sentence in sentences:
        assert 4 <= words(sentence) <= 12, sentence
        assert sentence[-1] in ".?!", sentence
