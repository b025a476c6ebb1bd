"""Find a StyleTTS2 voice's files on this machine: a directory, or a hub name in the local cache.

A voice (``profile.tts.voice``) is a directory, or a hub repository name such as
``yl4579/StyleTTS2-LibriTTS`` whose snapshot is already in the local Hugging Face cache (read
from the cache's layout: nothing is downloaded, the network is never used). Inside it, the
checkpoint is the last ``*.pth`` (by name: the latest epoch) in the folder of a ``config.yml``
that has one (the published repositories keep ``Models/<name>/config.yml`` beside it).
Reference audio is ``references/<emotion>.wav`` in that folder or in the voice's directory
(``neutral.wav`` is the voice's default; a multispeaker model needs it). No torch here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ModelError
from voices.engine import EMOTIONS, Emotion

__all__ = ["StyleTTS2Files", "locate"]


@dataclass(frozen=True)
class StyleTTS2Files:
    checkpoint: Path
    config: Path
    references: dict[Emotion, Path] = field(default_factory=dict)


def _hub_cache() -> Path:
    if "HF_HUB_CACHE" in os.environ:
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME", str(Path("~/.cache/huggingface").expanduser()))
    return Path(home) / "hub"


def _snapshot(name: str) -> Path | None:
    folder = _hub_cache() / ("models--" + name.replace("/", "--"))
    try:
        revision = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = folder / "snapshots" / revision
    return snapshot if snapshot.is_dir() else None


def locate(voice: str) -> StyleTTS2Files:
    """The files of ``voice``; a :class:`ModelError` says what is missing and where."""
    path = Path(voice).expanduser()
    root = path if path.is_dir() else (_snapshot(voice) if voice.count("/") == 1 else None)
    if root is None:
        raise ModelError(
            f"StyleTTS2 voice {voice!r} not found: give a checkpoint directory, or put the hub "
            "repository in the local Hugging Face cache before starting (nothing is downloaded)"
        )
    for config in sorted(root.rglob("config.yml")):
        checkpoints = sorted(config.parent.glob("*.pth"))
        if checkpoints:
            return StyleTTS2Files(checkpoints[-1], config, _references(config.parent, root))
    raise ModelError(f"StyleTTS2 voice {voice!r}: no config.yml beside a .pth checkpoint in {root}")


def _references(*folders: Path) -> dict[Emotion, Path]:
    found: dict[Emotion, Path] = {}
    for folder in folders:
        for emotion in EMOTIONS:
            wav = folder / "references" / f"{emotion}.wav"
            if emotion not in found and wav.is_file():
                found[emotion] = wav
    return found
