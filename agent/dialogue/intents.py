"""Which intent an utterance expresses: embeddings, keywords and patterns, scored.

An intent's score is, in this order:

- 1.0 when one of its ``patterns`` (a regular expression) matches;
- otherwise its *similarity*, the best cosine between the utterance's embedding and the
  embeddings of its ``examples`` (0 without examples or without an embedding), plus
  ``keyword_boost`` when one of its ``keywords`` occurs as a whole word or phrase, at most 1.0.

An intent is matched when it ranks first and reaches its threshold (``threshold`` or the
dialogue's). Equal scores rank by similarity, then by the order of the intents in the file.

:class:`EarlyDecider` watches partial transcripts and names an intent only when it is
already unambiguous: above the early threshold, ahead of the second by the margin, and first
in ``stable_partials`` partials in a row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.config.dialogue import EarlyMatchConfig, IntentConfig
from agent.dialogue.embeddings import Matrix
from agent.dialogue.parsing import normalize, phrase_spans, tokenize

__all__ = ["EarlyDecider", "IntentMatcher", "IntentScore", "IntentScores"]


@dataclass(frozen=True, slots=True)
class IntentScore:
    name: str
    score: float
    #: best cosine similarity with the intent's examples
    similarity: float
    keyword: bool = False
    pattern: bool = False


@dataclass(frozen=True, slots=True)
class IntentScores:
    """Every intent's score for one utterance, best first."""

    ranked: tuple[IntentScore, ...]
    #: the scores used the utterance's embedding (False: keywords and patterns only)
    embedded: bool = True

    @property
    def top(self) -> IntentScore | None:
        return self.ranked[0] if self.ranked else None

    @property
    def margin(self) -> float:
        """How far the best is ahead of the second (the best's score when it is alone)."""
        if not self.ranked:
            return 0.0
        second = self.ranked[1].score if len(self.ranked) > 1 else 0.0
        return self.ranked[0].score - second

    def of(self, name: str) -> IntentScore | None:
        return next((score for score in self.ranked if score.name == name), None)


@dataclass(frozen=True, slots=True)
class _Rules:
    keywords: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]


class IntentMatcher:
    """The intents of one agent with their example embeddings; shared by every session.

    ``example_vectors`` holds one unit-length row per text of :meth:`example_texts`, in order.
    """

    def __init__(
        self,
        intents: Sequence[IntentConfig],
        example_vectors: Matrix | None,
        *,
        threshold: float,
        keyword_boost: float,
    ) -> None:
        self.intents = {intent.name: intent for intent in intents}
        self._names = [intent.name for intent in intents]
        self.threshold = threshold
        self.keyword_boost = keyword_boost
        self._rules = [
            _Rules(
                tuple(intent.keywords),
                tuple(re.compile(p, re.IGNORECASE) for p in intent.patterns),
            )
            for intent in intents
        ]
        counts = [len(intent.examples) for intent in intents]
        total = sum(counts)
        if total and (example_vectors is None or len(example_vectors) != total):
            raise ValueError(f"expected {total} example vectors")
        self._vectors = example_vectors if total else None
        # Examples are grouped by intent: row ranges per intent, for a per-intent max.
        self._owners = [i for i, count in enumerate(counts) for _ in range(count)]
        self._starts = np.cumsum([0, *counts])[:-1]
        self._has_examples = np.array([count > 0 for count in counts], dtype=bool)

    @staticmethod
    def example_texts(intents: Sequence[IntentConfig]) -> list[str]:
        return [example for intent in intents for example in intent.examples]

    @property
    def uses_embeddings(self) -> bool:
        return self._vectors is not None

    def pattern_match(self, text: str) -> str | None:
        """The first intent whose pattern matches: decisive, no embedding needed."""
        for name, rules in zip(self._names, self._rules, strict=True):
            if any(pattern.search(text) for pattern in rules.patterns):
                return name
        return None

    def keyword_hits(self, text: str) -> set[str]:
        tokens = tokenize(normalize(text))
        return {
            name
            for name, rules in zip(self._names, self._rules, strict=True)
            if any(phrase_spans(tokens, keyword) for keyword in rules.keywords)
        }

    def score(self, text: str, vector: Matrix | None) -> IntentScores:
        """Score every intent; ``vector`` is the utterance's embedding (None: rules only)."""
        count = len(self._names)
        similarity = np.zeros(count, dtype=np.float64)
        if vector is not None and self._vectors is not None:
            cosines = self._vectors @ vector
            best = np.maximum.reduceat(cosines, self._starts[self._has_examples])
            similarity[self._has_examples] = np.clip(best, -1.0, 1.0)
        keywords = self.keyword_hits(text)
        results = []
        for i, (name, rules) in enumerate(zip(self._names, self._rules, strict=True)):
            pattern = any(p.search(text) for p in rules.patterns)
            keyword = name in keywords
            if pattern:
                score = 1.0
            else:
                score = min(1.0, float(similarity[i]) + (self.keyword_boost if keyword else 0.0))
            results.append((score, float(similarity[i]), -i, name, keyword, pattern))
        results.sort(reverse=True)
        return IntentScores(
            tuple(
                IntentScore(name, round(score, 6), round(sim, 6), keyword, pattern)
                for score, sim, _, name, keyword, pattern in results
            ),
            embedded=vector is not None,
        )

    def threshold_of(self, name: str) -> float:
        own = self.intents[name].threshold
        return self.threshold if own is None else own

    def match(self, scores: IntentScores | None) -> IntentScore | None:
        """The top intent when it reaches its threshold."""
        top = scores.top if scores is not None else None
        if top is None or top.score < self.threshold_of(top.name):
            return None
        return top


class EarlyDecider:
    """Sans-I/O: feed the scores of each partial transcript; names an intent when it is safe.

    ``observe`` returns the intent once the same one has been first, above ``threshold`` and
    ahead of the second by ``margin``, in ``stable_partials`` partials in a row. ``reset``
    at the end of each utterance.
    """

    def __init__(self, config: EarlyMatchConfig) -> None:
        self.config = config
        self._candidate: str | None = None
        self._streak = 0

    def observe(self, scores: IntentScores) -> str | None:
        top = scores.top
        config = self.config
        if (
            not config.enabled
            or top is None
            or top.score < config.threshold
            or scores.margin < config.margin
        ):
            self._candidate, self._streak = None, 0
            return None
        if top.name == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = top.name, 1
        return top.name if self._streak >= config.stable_partials else None

    def reset(self) -> None:
        self._candidate, self._streak = None, 0
