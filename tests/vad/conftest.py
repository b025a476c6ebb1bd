"""One Silero model and one shared batching executor for every VAD test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.executor import ModelExecutor
from pipeline.vad import SileroVad, VadRequest, VadResult, vad_executor


@pytest.fixture(scope="session")
def vad_model() -> SileroVad:
    return SileroVad()


@pytest.fixture(scope="session")
def shared_executor(vad_model: SileroVad) -> Iterator[ModelExecutor[VadRequest, VadResult]]:
    with vad_executor(vad_model) as executor:
        yield executor
