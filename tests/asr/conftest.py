"""One Whisper model and one shared executor for every ASR test (loaded once per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.asr.decoder import Decoded, DecodeRequest, WhisperDecoder
from pipeline.asr.stage import asr_executor
from pipeline.executor import ModelExecutor


@pytest.fixture(scope="session")
def decoder() -> WhisperDecoder:
    """The embedded Whisper base (int8, 2 threads), assembled in the user's cache if needed."""
    return WhisperDecoder.load()


@pytest.fixture(scope="session")
def executor(decoder: WhisperDecoder) -> Iterator[ModelExecutor[DecodeRequest, Decoded]]:
    with asr_executor(decoder) as shared:
        yield shared
