"""Word error rate, the accuracy metric of speech recognition (lower is better).

Text is normalised roughly as Whisper's English scorer does: lower case; punctuation dropped
(apostrophes and in-word hyphens kept as word parts); numbers from 0 to 99 spelled out, so
"4 people" and "four people" agree; "ok"/"okay" and a few spellings folded together. The tests
hold transcripts to it and the benchmarks (bench/asr_latency.py, bench/roundtrip.py) report it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["corpus_wer", "edit_distance", "normalise", "wer"]

_ONES = [
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SPELLINGS = {"ok": "okay", "mr": "mister", "mrs": "missus", "dr": "doctor"}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _number(value: int) -> list[str]:
    if value < 20:
        return [_ONES[value]]
    if value < 100:
        tens, ones = divmod(value, 10)
        return [_TENS[tens - 2]] + ([_ONES[ones]] if ones else [])
    return [str(value)]


def normalise(text: str) -> list[str]:
    """The words of ``text`` as compared by :func:`wer`."""
    words: list[str] = []
    for token in _TOKEN.findall(text.lower().replace("\u2019", "'")):
        if token.isdigit():
            words += _number(int(token))
        else:
            words.append(_SPELLINGS.get(token, token))
    return words


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (0 is perfect; may exceed 1)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return float(len(hyp) > 0)
    return edit_distance(ref, hyp) / len(ref)


def corpus_wer(pairs: Sequence[tuple[str, str]]) -> float:
    """Total errors over total reference words, for (reference, hypothesis) pairs."""
    errors = sum(edit_distance(normalise(r), normalise(h)) for r, h in pairs)
    words = sum(len(normalise(r)) for r, _ in pairs)
    return errors / words if words else 0.0
