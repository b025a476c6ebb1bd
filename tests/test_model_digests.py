"""The model files from PyPI packages, checked against their pinned SHA-256.

The real files must pass; a tampered copy (built in a temporary folder, never in the installed
packages) is refused with an error naming the file, the digest expected and the digest found;
a stamp spares a restart the hashing, and any change to the file voids it. The assembled
models (Whisper base, the LLM's GGUF) are assembled again from their wheels when their cached
copy was changed, and refused when the wheels are not the pinned ones.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

import pipeline.model_digests as digests
from agent.dialogue.llm_local import EMBEDDED_GGUF, embedded_gguf
from pipeline.asr.model import EMBEDDED_DIR_NAME, EMBEDDED_FILES, EMBEDDED_PARTS, embedded_model_dir
from pipeline.errors import ModelError
from pipeline.model_digests import SHA256, STAMPS, check, packaged_name, sha256_of

SILERO = "silero_vad/data/silero_vad.onnx"


def replace(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` as another file (a new inode), as a copy or an upgrade would.

    Not written in place: a file's times tick coarsely (a few ms), so an in-place write right
    after a check may leave size, times and inode all as they were.
    """
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def installed(name: str) -> Path:
    """Where the package file named ``name`` (``module/path``) is installed."""
    module, _, inside = name.partition("/")
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{module} is not installed"
    assert spec.submodule_search_locations, f"{module} is not a package"
    return Path(next(iter(spec.submodule_search_locations))) / inside


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files :func:`check` hashes (the real :func:`sha256_of`, counted)."""
    seen: list[Path] = []
    real = digests.sha256_of

    def counted(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(digests, "sha256_of", counted)
    return seen


@pytest.mark.parametrize("name", [n for n in SHA256 if not n.startswith("assembled/")])
def test_the_installed_package_files_have_their_pinned_digests(name: str, tmp_path: Path) -> None:
    path = installed(name)
    check(path, name, stamps=tmp_path)
    assert packaged_name(path) == name


def test_a_tampered_copy_is_refused_with_both_digests(tmp_path: Path) -> None:
    copy = tmp_path / "silero_vad.onnx"
    shutil.copyfile(installed(SILERO), copy)
    with copy.open("r+b") as file:  # one byte in the middle, the size unchanged
        file.seek(copy.stat().st_size // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))
    found = sha256_of(copy)
    assert found != SHA256[SILERO]
    with pytest.raises(ModelError) as refused:
        check(copy, SILERO, stamps=tmp_path / "stamps")
    message = str(refused.value)
    assert str(copy) in message
    assert f"expected {SHA256[SILERO]}, got {found}" in message
    assert not (tmp_path / "stamps").exists()  # nothing stamped


def test_a_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read the model file"):
        check(tmp_path / "missing.onnx", SILERO, stamps=tmp_path)


def test_a_copy_elsewhere_is_no_packaged_file(tmp_path: Path) -> None:
    copy = tmp_path / "silero_vad.onnx"
    shutil.copyfile(installed(SILERO), copy)
    assert packaged_name(copy) is None
    assert packaged_name(tmp_path / "model.safetensors") is None


def test_a_stamped_file_is_not_hashed_again_until_it_changes(
    tmp_path: Path, hashed: list[Path]
) -> None:
    copy = tmp_path / "silero_vad.onnx"
    shutil.copyfile(installed(SILERO), copy)
    stamps = tmp_path / "stamps"
    check(copy, SILERO, stamps=stamps)
    assert hashed == [copy]
    assert len(list(stamps.iterdir())) == 1
    check(copy, SILERO, stamps=stamps)  # a restart
    assert hashed == [copy]
    data = copy.read_bytes()
    replace(copy, data)  # the same bytes in a new file: the stamp no longer vouches
    check(copy, SILERO, stamps=stamps)
    assert hashed == [copy, copy]
    status = copy.stat()  # touched: another mtime
    os.utime(copy, ns=(status.st_atime_ns, status.st_mtime_ns - 1_000_000_000))
    check(copy, SILERO, stamps=stamps)
    assert hashed == [copy, copy, copy]
    replace(copy, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelError, match="failed its SHA-256 check"):
        check(copy, SILERO, stamps=stamps)


def test_a_stamp_for_another_digest_is_not_trusted(tmp_path: Path, hashed: list[Path]) -> None:
    copy = tmp_path / "silero_vad.onnx"
    shutil.copyfile(installed(SILERO), copy)
    check(copy, SILERO, stamps=tmp_path / "stamps")
    (stamp,) = (tmp_path / "stamps").iterdir()
    stamp.write_text(stamp.read_text().replace(SHA256[SILERO], "0" * 64))
    check(copy, SILERO, stamps=tmp_path / "stamps")
    assert hashed == [copy, copy]


def test_a_changed_cached_whisper_model_is_assembled_again(tmp_path: Path) -> None:
    folder = embedded_model_dir(tmp_path)
    model = folder / "model.bin"
    size = model.stat().st_size
    data = bytearray(model.read_bytes())  # changed: same size, the manifest still current
    data[size // 3 : size // 3 + 64] = bytes(64)
    replace(model, bytes(data))
    del data
    try:
        assert embedded_model_dir(tmp_path) == folder
        assert model.stat().st_size == size
        assert sha256_of(model) == SHA256[f"assembled/{EMBEDDED_DIR_NAME}/model.bin"]
        assert (tmp_path / STAMPS).is_dir()
    finally:
        shutil.rmtree(folder)  # 145 MB that pytest would keep for three sessions


def test_whisper_wheels_that_are_not_the_pinned_ones_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    for package, relative in EMBEDDED_PARTS:  # look-alike wheels, installed first on the path
        part = site / package / relative
        part.parent.mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
        part.write_bytes(b"not whisper")
    for name in EMBEDDED_FILES:
        (site / EMBEDDED_PARTS[0][0] / "data" / name).write_text("{}")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    with pytest.raises(ModelError, match=r"model\.bin.*failed its SHA-256 check: expected"):
        embedded_model_dir(tmp_path / "cache")


def test_a_changed_cached_gguf_is_assembled_again(tmp_path: Path) -> None:
    good = embedded_gguf()  # the shared cache's copy (assembled once, then stamped)
    target = tmp_path / EMBEDDED_GGUF
    with target.open("wb") as file:  # the right size, the wrong bytes (a sparse file)
        file.truncate(good.stat().st_size)
    try:
        assert embedded_gguf(tmp_path) == target
        assert sha256_of(target) == SHA256[f"assembled/{EMBEDDED_GGUF}"]
    finally:
        target.unlink()  # 490 MB that pytest would keep for three sessions
