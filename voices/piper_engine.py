"""Piper speech for Voxline, synthesized in a worker process.

:class:`PiperEngine` is a :class:`~voices.engine.TTSEngine` shared by every session. It keeps
one long-lived ``python -m voices.piper_worker`` process (Piper is GPL; the process boundary
keeps Voxline Apache-2.0 and turns a crash into one failed request) and a bounded queue of
requests in front of it, like :class:`~pipeline.executor.ModelExecutor`:

- **Admission control.** A request that finds ``max_queue`` requests waiting is refused with
  :class:`~pipeline.errors.Overloaded`.
- **One request at a time.** The worker gets the next request when the previous one has ended
  (chunks stream back as each sentence is synthesized), so requests of different sessions
  interleave at request granularity: give it clauses or sentences
  (:class:`~voices.chunking.ClauseChunker`), not whole replies.
- **Cancellation.** Closing a request's iterator (or cancelling the scope that reads it)
  removes it from the queue, or, when it is running, tells the worker to stop (between
  sentences, and inside one). Chunks still in the pipe are dropped.
- **Crashes.** If the worker dies, the running request fails with
  :class:`~pipeline.errors.ModelError` saying so; a new worker starts at once and the queued
  requests go to it. A worker that dies before it is ready fails every queued request (a bad
  voice file would otherwise restart forever); the next request tries again.
- **Readiness.** :meth:`PiperEngine.start` waits for the worker's handshake, sent after the
  voice is loaded and warmed up. Requests made earlier wait for it in the queue.

Threads: a reader thread per worker process turns replies into chunks and hands them to the
requesting event loop with ``loop.call_soon_threadsafe`` (the event loop never waits for the
pipe); a second thread keeps the worker's stderr in the log. A request's chunks queue up on its
event loop until read: at most the audio of that request, which is why requests should be
clause-sized.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec

from pipeline.errors import ClientError, ExecutorClosed, ModelError, Overloaded, VoxlineError
from voices.emotion import Expression
from voices.engine import Emotion, Prosody, SpeechChunk, SpeechPlan, as_plan
from voices.worker_protocol import (
    Cancel,
    Chunk,
    Done,
    Failed,
    Fatal,
    Ready,
    Reply,
    Synthesize,
    encode,
    read_reply,
)

_LOGGER = logging.getLogger(__name__)
_STDERR_LINES = 20
#: the longest pause a plan may ask for
MAX_PAUSE_MS = 10_000
#: the root of the ``voices`` package, so the worker imports this very copy of it
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class PiperStatistics:
    name: str
    #: a worker is up and has said it is ready
    running: bool
    worker_pid: int | None
    #: requests waiting now (not counting the one being synthesized)
    queue_depth: int
    max_queue: int
    in_flight: int
    requests_done: int
    #: requests that failed: the worker raised, or died while synthesizing them
    requests_failed: int
    rejected: int
    #: callers that stopped reading before the end of their request
    cancelled: int
    #: of ``cancelled``, requests the worker stopped before synthesizing all of them
    stopped: int
    restarts: int
    #: how word timings are made: "phonemes" (model durations) or "estimated"; None before start
    alignment: str | None


@dataclass(eq=False)
class _Request:
    id: int
    frame: bytes
    loop: asyncio.AbstractEventLoop
    #: chunks, then ``None`` at the end, or the error that ended the request
    items: asyncio.Queue[SpeechChunk | VoxlineError | None] = field(default_factory=asyncio.Queue)
    #: the worker (or a crash, or close) ended it: nothing more will come
    ended: bool = False
    #: the caller stopped reading
    abandoned: bool = False

    def deliver(self, item: SpeechChunk | VoxlineError | None) -> None:
        if self.abandoned:
            return
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:  # the caller's event loop has closed
            self.abandoned = True


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    ready: bool = False
    fatal: str | None = None
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=_STDERR_LINES))
    threads: list[threading.Thread] = field(default_factory=list)

    def write(self, frame: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        with contextlib.suppress(OSError, ValueError):  # dead or closed: the reader reports it
            stdin.write(frame)
            stdin.flush()

    def failure(self, reason: str | None) -> str:
        text = self.fatal or reason or f"exit code {self.process.returncode}"
        return f"{text}; stderr: {' | '.join(self.stderr_tail)}" if self.stderr_tail else text


class PiperEngine:
    """Piper voices through a shared worker process; see the module docstring.

    ``model`` is a voice ``.onnx`` file (with ``.onnx.json`` beside it, or ``config``); by
    default the embedded ``en_US-joe-medium`` voice. ``threads`` is the worker's onnxruntime
    thread count. ``alignment=False`` skips the model patch that reports phoneme durations
    (word timings are then estimated). ``presets`` replace the shared emotion presets
    (:data:`voices.emotion.PRESETS`) for this voice.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        config: str | Path | None = None,
        threads: int = 1,
        alignment: bool = True,
        use_cuda: bool = False,
        max_queue: int = 64,
        max_chars: int = 5000,
        startup_timeout: float = 120.0,
        presets: Mapping[Emotion, Expression] | None = None,
    ) -> None:
        self.name = "piper"
        self.max_queue = max_queue
        self.max_chars = max_chars
        self.startup_timeout = startup_timeout
        self._argv = [sys.executable, "-m", "voices.piper_worker", "--threads", str(threads)]
        if model is not None:
            self._argv += ["--model", str(model)]
        if config is not None:
            self._argv += ["--config", str(config)]
        if not alignment:
            self._argv.append("--no-alignment")
        if use_cuda:
            self._argv.append("--cuda")
        if presets is not None:
            self._argv += ["--presets", msgspec.json.encode(dict(presets)).decode()]
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Request] = deque()
        self._in_flight: _Request | None = None
        self._worker: _Worker | None = None
        self._closed = False
        self._ids = itertools.count(1)
        self._sample_rate: int | None = None
        self._alignment: str | None = None
        self._done = self._failed = self._rejected = self._cancelled = 0
        self._stopped = self._restarts = 0

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and wait until its voice is loaded and warm (blocking).

        Raises :class:`~pipeline.errors.ModelError` if it cannot start. In async code:
        ``await anyio.to_thread.run_sync(engine.start)``.
        """
        with self._lock:
            if self._closed:
                raise ExecutorClosed("the Piper engine is closed")
            if self._worker is None:
                self._spawn()
            worker = self._worker
            assert worker is not None
            self._changed.wait_for(
                lambda: worker.ready or self._worker is not worker, self.startup_timeout
            )
            if worker.ready:
                return
            if self._worker is worker:  # still loading: give up on it
                worker.process.kill()
                raise ModelError(f"the Piper worker was not ready in {self.startup_timeout} s")
            raise ModelError(f"the Piper worker failed to start: {worker.failure(None)}")

    def close(self) -> None:
        """Stop the worker; requests still waiting or running fail with ``ExecutorClosed``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            worker = self._worker
            pending = list(self._queue)
            if self._in_flight is not None:
                pending.append(self._in_flight)
            self._queue.clear()
            self._in_flight = None
            for request in pending:
                self._end(request, ExecutorClosed("the Piper engine closed"))
        if worker is None:
            return
        stdin = worker.process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()  # the worker exits at the end of its input
        try:
            worker.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.process.kill()
        for thread in worker.threads:
            thread.join()

    def __enter__(self) -> PiperEngine:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def sample_rate(self) -> int:
        if self._sample_rate is None:
            raise RuntimeError("the Piper engine has not started yet")
        return self._sample_rate

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id (for monitoring, and for tests that kill it)."""
        worker = self._worker
        return None if worker is None else worker.process.pid

    # -- requests --------------------------------------------------------------------------

    async def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` or a plan; see :meth:`voices.engine.TTSEngine.synthesize`."""
        request = self._submit(as_plan(text, prosody))
        try:
            while (item := await request.items.get()) is not None:
                if isinstance(item, VoxlineError):
                    raise item
                yield item
        finally:
            self._abandon(request)

    def _submit(self, plan: SpeechPlan) -> _Request:
        length = sum(len(segment.text) for segment in plan.segments)
        if length > self.max_chars:
            raise ClientError(f"{length} characters to speak at once (limit {self.max_chars})")
        if any(not 0 <= segment.pause_ms <= MAX_PAUSE_MS for segment in plan.segments):
            raise ClientError(f"pauses must last 0 to {MAX_PAUSE_MS} ms")
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise ExecutorClosed("the Piper engine is closed")
            if len(self._queue) >= self.max_queue:
                self._rejected += 1
                raise Overloaded(self.name, len(self._queue), self.max_queue)
            request_id = next(self._ids)
            request = _Request(request_id, encode(Synthesize(request_id, plan.segments)), loop)
            self._queue.append(request)
            if self._worker is None:
                self._spawn()
            self._pump()
        return request

    def _abandon(self, request: _Request) -> None:
        """The caller stopped reading: drop the request, or stop it if it runs."""
        with self._lock:
            request.abandoned = True
            if request.ended:
                return
            self._cancelled += 1
            if self._in_flight is request:
                if self._worker is not None:
                    self._worker.write(encode(Cancel(request.id)))
            else:
                with contextlib.suppress(ValueError):
                    self._queue.remove(request)
                request.ended = True

    # -- the worker (everything below runs with the lock held, or in the worker's threads) ---

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_SOURCE_ROOT), env.get("PYTHONPATH")) if p
        )
        process = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        worker = _Worker(process)
        worker.threads = [
            threading.Thread(target=self._read, args=(worker,), name="piper-reader", daemon=True),
            threading.Thread(target=_drain, args=(worker,), name="piper-stderr", daemon=True),
        ]
        self._worker = worker
        for thread in worker.threads:
            thread.start()

    def _pump(self) -> None:
        worker = self._worker
        if self._in_flight is None and worker is not None and worker.ready and self._queue:
            self._in_flight = self._queue.popleft()
            worker.write(self._in_flight.frame)

    def _end(self, request: _Request, item: VoxlineError | None) -> None:
        request.ended = True
        request.deliver(item)

    def _read(self, worker: _Worker) -> None:
        stdout = worker.process.stdout
        assert stdout is not None
        reason: str | None = None
        try:
            while (reply := read_reply(stdout)) is not None:
                with self._lock:
                    self._on_reply(worker, reply)
        except Exception as error:  # a reply we cannot read: the worker is not trustworthy
            reason = f"unreadable reply: {error}"
            worker.process.kill()
        self._on_exit(worker, reason)

    def _on_reply(self, worker: _Worker, reply: Reply) -> None:
        request = self._in_flight
        match reply:
            case Ready():
                worker.ready = True
                self._sample_rate = reply.sample_rate
                self._alignment = reply.alignment
                self._changed.notify_all()
            case Chunk() if request is not None and request.id == reply.id:
                request.deliver(reply.chunk)
            case Done() | Failed() if request is not None and request.id == reply.id:
                self._in_flight = None
                if isinstance(reply, Failed):
                    self._failed += 1
                    self._end(request, ModelError(f"Piper failed: {reply.reason}"))
                else:
                    self._done += 1
                    self._stopped += reply.stopped
                    self._end(request, None)
            case Fatal():
                worker.fatal = reply.reason
            case _:  # replies for a request that close() or a cancel already ended
                _LOGGER.debug("ignored a stray %s from the Piper worker", type(reply).__name__)
        self._pump()

    def _on_exit(self, worker: _Worker, reason: str | None) -> None:
        worker.process.wait()
        worker.fatal = worker.fatal or reason
        worker.threads[1].join(timeout=5)  # the stderr tail explains the exit
        for stream in (worker.process.stdout, worker.process.stdin):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        with self._lock:
            if self._worker is worker:
                self._worker = None
            self._changed.notify_all()
            if self._closed:
                return
            failure = worker.failure(reason)
            _LOGGER.error("the Piper worker (pid %d) exited: %s", worker.process.pid, failure)
            request = self._in_flight
            if request is not None:
                self._in_flight = None
                self._failed += 1
                self._end(request, ModelError(f"the Piper worker died mid-request ({failure})"))
            if not worker.ready:
                for waiting in self._queue:
                    self._end(waiting, ModelError(f"the Piper worker failed to start: {failure}"))
                self._queue.clear()
                return
            self._restarts += 1
            self._spawn()

    def statistics(self) -> PiperStatistics:
        with self._lock:
            worker = self._worker
            return PiperStatistics(
                name=self.name,
                running=worker is not None and worker.ready,
                worker_pid=None if worker is None else worker.process.pid,
                queue_depth=len(self._queue),
                max_queue=self.max_queue,
                in_flight=0 if self._in_flight is None else 1,
                requests_done=self._done,
                requests_failed=self._failed,
                rejected=self._rejected,
                cancelled=self._cancelled,
                stopped=self._stopped,
                restarts=self._restarts,
                alignment=self._alignment,
            )


def _drain(worker: _Worker) -> None:
    """Log the worker's stderr and keep its last lines for error messages."""
    stderr: IO[bytes] | None = worker.process.stderr
    assert stderr is not None
    with stderr:
        for raw in stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                worker.stderr_tail.append(line)
                _LOGGER.warning("piper worker: %s", line)
