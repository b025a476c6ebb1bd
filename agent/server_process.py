"""A real ``voxline serve`` in a child process, ready when its models are: for tests and benchmarks.

:func:`running_server` starts ``python -m agent.cli serve`` on a free local port, waits until
the server says ``voxline ready`` and stops it when the ``with`` block ends; the end-to-end
tests and the benchmarks (bench/) talk to it with a real client such as :mod:`agent.caller`.
It runs from a source checkout (:data:`ROOT`): configuration paths are relative to it, and what
the server printed is kept in ``artifacts/`` there (CI keeps that folder), one log per server.
:meth:`RunningServer.wait_for_log` waits for a line the server prints, and
:meth:`RunningServer.stop` signals it and returns its exit code (its drain: agent/drain.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ARTIFACTS", "ROOT", "RunningServer", "free_port", "running_server"]

ROOT = Path(__file__).resolve().parent.parent  # the checkout: configs/, artifacts/
ARTIFACTS = ROOT / "artifacts"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (as of now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningServer:
    """A started server: its process, its port and the lines it has printed so far."""

    process: subprocess.Popen[str]
    port: int
    log: list[str]
    #: notified at each line printed, and when the process ends
    printed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def wait_for_log(self, text: str, timeout: float) -> str:
        """The first line printed that holds ``text``, once there is one (blocks; a thread's
        work in async code). ``TimeoutError`` if none comes in time or the process ends."""

        def found() -> str | None:
            return next((line for line in self.log if text in line), None)

        with self.printed:
            self.printed.wait_for(lambda: found() or self.process.poll() is not None, timeout)
            if (line := found()) is None:
                raise TimeoutError(f"the server did not print {text!r}:\n" + "".join(self.log))
            return line

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` and wait for the process to exit: its exit code (blocks)."""
        self.process.send_signal(sig)
        return self.process.wait(timeout)


@contextmanager
def running_server(
    config: str = "configs/default.yaml",
    timeout: float = 120,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Run ``voxline serve`` until the ``with`` ends; wait until it says its models are ready.

    ``args`` are added to its command line (``--insecure``); ``env`` is added to this
    process's environment for it (``VOXLINE_API_KEYS``).
    """
    port = free_port()
    command = [sys.executable, "-m", "agent.cli", "serve", "--config", config]
    process = subprocess.Popen(
        [*command, "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
    )
    log: list[str] = []
    started = threading.Event()
    printed = threading.Condition()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with printed:
                log.append(line)
                printed.notify_all()
            if "voxline ready" in line:
                started.set()
        started.set()  # the process ended: let the waiter see it
        with printed:
            printed.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not started.wait(timeout) or process.poll() is not None:
            raise RuntimeError("voxline serve did not start:\n" + "".join(log))
        yield RunningServer(process, port, log, printed)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        # what the server said, for a failed test or run (CI keeps artifacts/)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"server-{Path(config).stem}-{port}.log").write_text("".join(log))
