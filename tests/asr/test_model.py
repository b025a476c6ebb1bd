"""Where the Whisper model comes from: the embedded wheels, a folder, a hub name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from pipeline.asr.model import (
    EMBEDDED_FILES,
    GPU_MODEL,
    MANIFEST,
    AsrModelConfig,
    _embedded_sources,
    cache_root,
    embedded_model_dir,
    resolve_model,
)
from pipeline.errors import ModelError


@pytest.fixture(scope="module")
def assembled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model assembled once into a private cache (145 MB)."""
    return embedded_model_dir(tmp_path_factory.mktemp("cache"))


def test_the_cache_lives_under_xdg_cache_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/srv/cache")
    assert cache_root() == Path("/srv/cache/voxline")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the spec says: ignore it
    assert cache_root() == Path.home() / ".cache" / "voxline"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "voxline"


def test_the_embedded_model_is_the_two_parts_joined(assembled: Path) -> None:
    parts, data = _embedded_sources()
    model = assembled / "model.bin"
    first, second = parts
    assert model.stat().st_size == first.stat().st_size + second.stat().st_size
    boundary = first.stat().st_size
    with model.open("rb") as joined, first.open("rb") as a, second.open("rb") as b:
        assert joined.read(4096) == a.read(4096)
        a.seek(boundary - 4096)
        joined.seek(boundary - 4096)
        assert joined.read(8192) == a.read(4096) + b.read(4096)
    for name in EMBEDDED_FILES:
        assert (assembled / name).read_bytes() == (data / name).read_bytes()
    manifest = json.loads((assembled / MANIFEST).read_text())
    assert manifest["model_bin_size"] == model.stat().st_size
    assert not [p for p in assembled.iterdir() if p.name.startswith(".")]  # no temporaries


def test_the_embedded_model_is_assembled_once(assembled: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in assembled.iterdir()}
    assert embedded_model_dir(assembled.parent) == assembled
    assert {p.name: p.stat().st_mtime_ns for p in assembled.iterdir()} == before


def test_a_damaged_copy_is_assembled_again(tmp_path: Path, assembled: Path) -> None:
    folder = tmp_path / assembled.name
    folder.mkdir()
    for source in assembled.iterdir():
        if source.name != "model.bin":  # hard links: copies for free, replaced by renames
            os.link(source, folder / source.name)
    (folder / "model.bin").write_bytes(b"\0" * 1000)  # an interrupted copy by something else
    embedded_model_dir(tmp_path)
    assert (folder / "model.bin").stat().st_size == (assembled / "model.bin").stat().st_size
    (folder / MANIFEST).write_text('{"sources": []}')  # the wheels were upgraded
    embedded_model_dir(tmp_path)
    assert (folder / MANIFEST).read_text() == (assembled / MANIFEST).read_text()


def test_a_model_folder_is_used_as_it_is(assembled: Path, tmp_path: Path) -> None:
    assert resolve_model(AsrModelConfig(model=str(assembled))) == str(assembled)
    with pytest.raises(ModelError, match=r"no model\.bin"):
        resolve_model(AsrModelConfig(model=str(tmp_path)))
    with pytest.raises(ModelError, match="no model folder"):
        resolve_model(AsrModelConfig(model=str(tmp_path / "missing")))
    with pytest.raises(ModelError, match="no model folder"):
        resolve_model(AsrModelConfig(model="./models/whisper"))


def test_a_hub_name_is_passed_to_faster_whisper_unchanged() -> None:
    # resolving only: loading would download, and nothing here can reach the hub
    assert resolve_model(AsrModelConfig(model="small")) == "small"
    assert resolve_model(AsrModelConfig(model="Systran/faster-whisper-small")) == (
        "Systran/faster-whisper-small"
    )


def test_the_config_is_strict_and_defaults_to_the_cpu() -> None:
    config = msgspec.json.decode(b'{"model": "embedded"}', type=AsrModelConfig)
    assert (config.device, config.compute_type, config.cpu_threads) == ("cpu", "int8", 2)
    assert (GPU_MODEL.device, GPU_MODEL.compute_type) == ("cuda", "float16")
    with pytest.raises(msgspec.ValidationError, match="cpu_thread"):
        msgspec.json.decode(b'{"cpu_thread": 4}', type=AsrModelConfig)
    with pytest.raises(msgspec.ValidationError, match="cpu_threads"):
        msgspec.json.decode(b'{"cpu_threads": 0}', type=AsrModelConfig)
