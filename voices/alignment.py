"""Which text words each stretch of synthesized audio speaks (sans-I/O).

A phoneme synthesizer (Piper) turns a text into sentences of phoneme *units* and, per sentence,
audio plus the number of samples each unit lasted. What it does not say is which word of the
text each unit belongs to: espeak-ng expands ``3.5`` into three words, reads ``Dr.`` as
``doctor``, and sometimes runs two words together (``dollars... really`` loses the space). So
:class:`WordAligner` matches, once per request, the phonemes of each text word spoken alone
(``expected``) against the units of the whole text (``difflib`` on the phoneme characters, stress
and punctuation ignored) and labels every sounding unit with a word. Then, as each sentence's
durations arrive, :meth:`WordAligner.sentence` turns labels into :class:`~voices.engine.WordTiming`
entries that tile the sentence's samples.

Rules:

- Labels never go backwards: a word's audio starts where its first unit starts and runs until
  the next word starts (so a word owns the pause after it); the first word of a sentence also
  owns the sentence's leading silence.
- A word with no sounding unit (``-``) gets no samples: it starts and ends where the next word
  starts.
- Each word belongs to the sentence where its first unit is; words are never split across
  sentences.
- When nothing matches (raw phoneme input, a phonemizer surprise) units are shared out among
  words in proportion to the words' lengths in characters.

Without real durations (a voice without the alignment output), :func:`spread` shares a
sentence's samples evenly among its units, which keeps the same rules at a coarser grain.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from voices.engine import WordTiming

_WORD = re.compile(r"\S+")
#: characters that carry no sound of their own: stress, length, pauses, punctuation, BOS/EOS/PAD
_SILENT = frozenset("ˈˌː \t\n!'\"(),-.:;?^$_…\u2013\u2014")


def word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each whitespace-separated word of ``text``."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


def sounds(phonemes: str) -> str:
    """``phonemes`` without stress, length and punctuation marks (what matching compares)."""
    return "".join(c for c in phonemes if c not in _SILENT)


def spread(total: int, parts: int) -> list[int]:
    """``total`` samples shared as evenly as integers allow among ``parts`` (sums to ``total``)."""
    if parts <= 0:
        return []
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class WordAligner:
    """Word timings for one text, fed sentence by sentence.

    ``spans`` are the words' character spans (already shifted to the request's coordinates),
    ``expected`` the phonemes of each word spoken alone, ``sentences`` the units of each
    sentence the synthesizer will produce, including silent ones (``^``, ``$``, spaces,
    punctuation), exactly as many as it reports durations for.
    """

    def __init__(
        self,
        spans: Sequence[tuple[int, int]],
        expected: Sequence[str],
        sentences: Sequence[Sequence[str]],
    ) -> None:
        if len(spans) != len(expected):
            raise ValueError("one expected phoneme string per word")
        self._spans = list(spans)
        self._sentences = [list(units) for units in sentences]
        labels = _label_units(
            [sounds(e) for e in expected],
            [sounds(u) for units in self._sentences for u in units],
            [end - start for start, end in spans],
        )
        # labels back into per-sentence lists
        self._labels: list[list[int | None]] = []
        at = 0
        for units in self._sentences:
            self._labels.append(labels[at : at + len(units)])
            at += len(units)
        # the sentence each word belongs to: where its first unit is
        first_sentence: list[int | None] = [None] * len(spans)
        for k, sentence_labels in enumerate(self._labels):
            for label in sentence_labels:
                if label is not None and first_sentence[label] is None:
                    first_sentence[label] = k
        # a word without units goes with the next word that has some (or the last sentence)
        following = len(self._sentences) - 1
        for i in reversed(range(len(spans))):
            found = first_sentence[i]
            if found is None:
                first_sentence[i] = max(following, 0)
            else:
                following = found
        self._words_of: list[list[int]] = [[] for _ in self._sentences]
        for i, sentence in enumerate(first_sentence):
            if self._sentences and sentence is not None:
                self._words_of[sentence].append(i)

    @property
    def sentence_count(self) -> int:
        return len(self._sentences)

    def sentence(
        self, index: int, durations: Sequence[int], sample_offset: int
    ) -> tuple[int, int, tuple[WordTiming, ...]]:
        """``(text_start, text_end, words)`` for sentence ``index``.

        ``durations`` are the samples of each of its units; ``sample_offset`` is where the
        sentence's audio starts in the utterance. An empty text span (``start == end``, both
        0) means the sentence speaks no word.
        """
        units = self._sentences[index]
        if len(durations) != len(units):
            raise ValueError(f"sentence {index} has {len(units)} units, got {len(durations)}")
        words = self._words_of[index]
        end = sample_offset + sum(durations)
        if not words:
            return 0, 0, ()
        # where each word's first unit starts
        starts: dict[int, int] = {}
        position = sample_offset
        for label, duration in zip(self._labels[index], durations, strict=True):
            if label is not None and label not in starts:
                starts[label] = position
            position += duration
        # words without a start here take the next word's start (or the sentence end)
        begin: list[int] = []
        upcoming = end
        for i in reversed(words):
            upcoming = starts.get(i, upcoming)
            begin.append(upcoming)
        begin.reverse()
        begin[0] = sample_offset
        timings = tuple(
            WordTiming(
                self._spans[i][0],
                self._spans[i][1],
                begin[j],
                begin[j + 1] if j + 1 < len(words) else end,
            )
            for j, i in enumerate(words)
        )
        return timings[0].text_start, timings[-1].text_end, timings


def _label_units(
    expected: Sequence[str], units: Sequence[str], lengths: Sequence[int]
) -> list[int | None]:
    """The word each unit belongs to (``None`` for silent units); never decreasing."""
    labels: list[int | None] = [None] * len(units)
    sounding = [j for j, unit in enumerate(units) if unit]
    if not sounding or not expected:
        return labels
    wanted = "".join(expected)
    owner = [i for i, e in enumerate(expected) for _ in e]
    heard = "".join(units[j] for j in sounding)
    unit_of = [j for j in sounding for _ in units[j]]
    matcher = difflib.SequenceMatcher(None, wanted, heard, autojunk=False)
    matched = False
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            unit = unit_of[b + k]
            if labels[unit] is None:
                labels[unit] = owner[a + k]
                matched = True
    if not matched:
        return _proportional(labels, sounding, lengths)
    # fill the gaps with the previous label (the first with the next), never going back
    previous: int | None = next(labels[j] for j in sounding if labels[j] is not None)
    for j in sounding:
        current = labels[j]
        if current is None or (previous is not None and current < previous):
            labels[j] = previous
        else:
            previous = current
    return labels


def _proportional(
    labels: list[int | None], sounding: Sequence[int], lengths: Sequence[int]
) -> list[int | None]:
    """Share sounding units among words in proportion to their character lengths."""
    total = sum(lengths) or 1
    bounds: list[float] = []
    running = 0
    for length in lengths:
        running += length
        bounds.append(running / total)
    word = 0
    for n, j in enumerate(sounding):
        fraction = (n + 0.5) / len(sounding)
        while word < len(bounds) - 1 and fraction > bounds[word]:
            word += 1
        labels[j] = word
    return labels
