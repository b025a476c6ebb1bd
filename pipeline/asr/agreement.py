"""Partial transcripts that do not flicker: local agreement between successive decodes (sans-I/O).

While the caller speaks, the growing utterance is decoded again and again. Each decode is a
*hypothesis* for the whole utterance so far. :class:`LocalAgreement` turns them into a
*stable* prefix, which later partials never change, and an *unstable* tail, which they may.

Rules (``n`` is the agreement depth, 2 by default, as in LocalAgreement-2 of Macháček et al.,
"Turning Whisper into Real-Time Transcription System", 2023):

1. Words are compared without case and punctuation (:func:`~pipeline.asr.guards.normalise_word`).
2. Each hypothesis is aligned with the stable prefix (a word-level diff); what follows the
   prefix's last word in the hypothesis is that hypothesis's *tail*.
3. The stable prefix grows by the longest common prefix of the tails of the last ``n``
   hypotheses, spelled as in the newest one. It never shrinks and its words never change,
   even when a later hypothesis disagrees with it.
4. The unstable part is the newest hypothesis's tail after the words just made stable.

The final transcript is decoded afresh from the whole utterance and may revise the stable
prefix (the stage says so in :class:`~pipeline.asr.events.Transcript`); call :meth:`reset`
for the next utterance.
"""

from __future__ import annotations

import difflib
from collections import deque
from dataclasses import dataclass

from pipeline.asr.guards import normalise_word


@dataclass(frozen=True, slots=True)
class Partial:
    """A partial transcript: ``stable`` words, then ``unstable`` ones."""

    stable: tuple[str, ...]
    unstable: tuple[str, ...]

    @property
    def stable_text(self) -> str:
        return " ".join(self.stable)

    @property
    def unstable_text(self) -> str:
        return " ".join(self.unstable)

    @property
    def text(self) -> str:
        return " ".join(self.stable + self.unstable)


class LocalAgreement:
    """Feed hypotheses for one utterance with :meth:`update`; read the partial it returns."""

    def __init__(self, n: int = 2) -> None:
        if n < 1:
            raise ValueError("the agreement depth must be at least 1")
        self.n = n
        self._stable: list[str] = []
        self._stable_keys: list[str] = []
        #: tails (after the stable prefix) of the last ``n`` hypotheses, as (words, keys)
        self._tails: deque[tuple[list[str], list[str]]] = deque(maxlen=n)

    @property
    def stable(self) -> tuple[str, ...]:
        return tuple(self._stable)

    def update(self, text: str) -> Partial:
        """Take the newest hypothesis for the whole utterance; return the partial to show."""
        words = text.split()
        keys = [normalise_word(w) for w in words]
        begin = self._after_stable(keys)
        tail_words, tail_keys = words[begin:], keys[begin:]
        self._tails.append((tail_words, tail_keys))
        if len(self._tails) == self.n:
            agreed = _common_prefix([tail for _, tail in self._tails])
            agreed = _without_empty_end(tail_keys, agreed)
            if agreed:
                self._stable += tail_words[:agreed]
                self._stable_keys += tail_keys[:agreed]
                self._tails = deque(
                    ((w[agreed:], k[agreed:]) for w, k in self._tails), maxlen=self.n
                )
                tail_words = tail_words[agreed:]
        return Partial(stable=tuple(self._stable), unstable=tuple(tail_words))

    def reset(self) -> None:
        """Forget the utterance: the next hypothesis starts a new one."""
        self._stable.clear()
        self._stable_keys.clear()
        self._tails.clear()

    def _after_stable(self, keys: list[str]) -> int:
        """Index in ``keys`` just after the words aligned with the stable prefix."""
        stable = self._stable_keys
        if not stable:
            return 0
        if keys[: len(stable)] == stable:
            return len(stable)
        matcher = difflib.SequenceMatcher(a=stable, b=keys, autojunk=False)
        blocks = [b for b in matcher.get_matching_blocks() if b.size]
        if not blocks:
            return min(len(stable), len(keys))
        last = blocks[-1]
        unmatched = len(stable) - (last.a + last.size)  # stable words after the last match
        return min(last.b + last.size + unmatched, len(keys))


def _common_prefix(sequences: list[list[str]]) -> int:
    length = min(len(s) for s in sequences)
    for i in range(length):
        if any(s[i] != sequences[0][i] for s in sequences[1:]):
            return i
    return length


def _without_empty_end(keys: list[str], agreed: int) -> int:
    """Do not end a stable prefix on a word that is only punctuation (it may grow a word)."""
    while agreed and not keys[agreed - 1]:
        agreed -= 1
    return agreed
