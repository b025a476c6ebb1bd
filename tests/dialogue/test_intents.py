"""Intent scores (embeddings, keywords, patterns) and the early decision on partials."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from agent.config import DialogueConfig, EarlyMatchConfig
from agent.dialogue.embeddings import SentenceEmbedder
from agent.dialogue.intents import EarlyDecider, IntentMatcher, IntentScore, IntentScores

DIALOGUE = msgspec.yaml.decode(
    b"""
intents:
  - name: book_table
    examples: [I'd like to book a table, Can I make a reservation?, A table for two please]
    keywords: [book, reservation]
  - name: opening_hours
    examples: [What are your opening hours?, When do you open?, Are you open on Sunday?]
  - name: human
    examples: [Can I talk to a person?]
    patterns: ['\\b(human|operator)\\b']
  - name: cancel
    keywords: [cancel]
""",
    type=DialogueConfig,
)


async def matcher_for(embedder: SentenceEmbedder) -> IntentMatcher:
    vectors = await embedder.embed_many(IntentMatcher.example_texts(DIALOGUE.intents))
    return IntentMatcher(DIALOGUE.intents, vectors, threshold=0.5, keyword_boost=0.2)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("I want to reserve a table for tonight", "book_table"),
        ("what time do you open tomorrow", "opening_hours"),
        ("are you open on saturdays", "opening_hours"),
        ("get me an operator", "human"),
        ("please cancel it", None),  # a keyword alone scores the boost: below the threshold
    ],
)
async def test_utterances_match_their_intent(
    embedder: SentenceEmbedder, text: str, intent: str | None
) -> None:
    with anyio.fail_after(30):
        matcher = await matcher_for(embedder)
        scores = matcher.score(text, await embedder.embed(text))
        top = matcher.match(scores)
        assert (top.name if top else None) == intent


@pytest.mark.anyio
async def test_how_scores_are_made(embedder: SentenceEmbedder) -> None:
    with anyio.fail_after(30):
        matcher = await matcher_for(embedder)
        text = "can I book for friday"
        scores = matcher.score(text, await embedder.embed(text))
        book = scores.of("book_table")
        assert book is not None
        assert book.keyword
        assert book.score == pytest.approx(min(1.0, book.similarity + 0.2), abs=1e-5)
        human = matcher.score("a human please", None).of("human")
        assert human == IntentScore("human", 1.0, 0.0, keyword=False, pattern=True)
        cancel = matcher.score("cancel", None).of("cancel")
        assert cancel is not None
        assert cancel.score == pytest.approx(0.2)
        ranked = [s.score for s in scores.ranked]
        assert ranked == sorted(ranked, reverse=True)
        assert scores.margin == pytest.approx(ranked[0] - ranked[1])


def test_patterns_and_keywords_need_no_embedding() -> None:
    matcher = IntentMatcher(
        [i for i in DIALOGUE.intents if not i.examples],
        None,
        threshold=0.5,
        keyword_boost=0.2,
    )
    assert not matcher.uses_embeddings
    assert matcher.keyword_hits("Cancel that") == {"cancel"}


def test_example_vectors_must_match_the_examples() -> None:
    with pytest.raises(ValueError, match="example vectors"):
        IntentMatcher(DIALOGUE.intents, None, threshold=0.5, keyword_boost=0.2)


def scores(*pairs: tuple[str, float]) -> IntentScores:
    return IntentScores(tuple(IntentScore(name, score, score) for name, score in pairs))


EARLY = EarlyMatchConfig(threshold=0.7, margin=0.15, stable_partials=2)


@pytest.mark.parametrize(
    ("partials", "decisions"),
    [
        # clear and stable: decided on the second partial
        ([[("a", 0.8), ("b", 0.3)], [("a", 0.85), ("b", 0.3)]], [None, "a"]),
        # below the threshold
        ([[("a", 0.6), ("b", 0.1)], [("a", 0.65), ("b", 0.1)]], [None, None]),
        # ambiguous: the margin is too small
        ([[("a", 0.8), ("b", 0.7)], [("a", 0.85), ("b", 0.75)]], [None, None]),
        # the leader changes: the streak starts again
        (
            [[("a", 0.8), ("b", 0.3)], [("b", 0.9), ("a", 0.3)], [("b", 0.9), ("a", 0.2)]],
            [None, None, "b"],
        ),
        # a weak partial in between breaks the streak
        (
            [[("a", 0.8), ("b", 0.3)], [("a", 0.5), ("b", 0.3)], [("a", 0.8), ("b", 0.3)]],
            [None, None, None],
        ),
        # a lone intent: its score is its margin
        ([[("a", 0.8)], [("a", 0.8)]], [None, "a"]),
    ],
)
def test_early_decisions_need_a_clear_and_stable_leader(
    partials: list[list[tuple[str, float]]], decisions: list[str | None]
) -> None:
    decider = EarlyDecider(EARLY)
    assert [decider.observe(scores(*p)) for p in partials] == decisions


def test_early_decisions_reset_and_can_be_turned_off() -> None:
    decider = EarlyDecider(EARLY)
    clear = scores(("a", 0.9), ("b", 0.1))
    decider.observe(clear)
    decider.reset()
    assert decider.observe(clear) is None
    off = EarlyDecider(EarlyMatchConfig(enabled=False))
    assert [off.observe(clear) for _ in range(3)] == [None, None, None]
