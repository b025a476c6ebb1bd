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
  :class:`~pipeline.errors.ModelError` saying so; a new worker starts after a backoff
  (:func:`~pipeline.breaker.backoff_delay`: 0.25 s doubling per crash in a row, at most 30 s,
  jittered) and the queued requests go to it. A worker that dies before it is ready fails
  every queued request (a bad voice file would otherwise restart forever); the next request
  tries again.
- **Hangs.** Each request has a deadline from the moment the worker gets it:
  ``deadline_s`` plus ``deadline_per_audio`` times the audio it should make (its characters
  at :data:`CHARS_PER_SECOND`, slowed by its ``rate``, plus its pauses): 2 s + 0.5 x by
  default, ten times what synthesis takes on one CPU thread. A worker that misses it is
  killed (a watchdog thread) and restarted as after a crash; the request fails with a
  ``ModelError`` saying it timed out (``timeouts`` in :meth:`PiperEngine.statistics`).
- **Circuit breaker.** A :class:`~pipeline.breaker.Breaker` counts requests that failed with
  the worker (a crash, a hang, a worker that could not start): after ``breaker_failures`` in
  a row, requests are refused at once with a ``ModelError`` for ``breaker_cooldown_s``, then
  one request probes. A request the worker answered (done, or failed by the synthesizer)
  counts as a success.
- **Readiness.** :meth:`PiperEngine.start` waits for the worker's handshake, sent after the
  voice is loaded and warmed up. Requests made earlier wait for it in the queue.

Threads: a reader thread per worker process turns replies into chunks and hands them to the
requesting event loop with ``loop.call_soon_threadsafe`` (the event loop never waits for the
pipe); a second thread keeps the worker's stderr in the log. One watchdog thread per engine
kills a worker past its deadline and starts the next one when its backoff is over. A
request's chunks queue up on its event loop until read: at most the audio of that request,
which is why requests should be clause-sized.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec

from pipeline.breaker import Breaker, BreakerState, BreakerStatistics, Deadline, backoff_delay
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
#: speech is about 16 characters a second at rate 1 (the joe voice: 16-18); counted low, so
#: the expected audio, and the deadline, come out long rather than short
CHARS_PER_SECOND = 15.0
#: restarts after crashes in a row wait 0.25 s, 0.5 s, 1 s ... at most 30 s (jittered)
RESTART_BASE_S = 0.25
RESTART_CAP_S = 30.0


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
    #: requests the worker did not finish by their deadline (it was killed and restarted)
    timeouts: int
    #: the circuit breaker: its state and how often it refused
    breaker: BreakerStatistics
    #: how word timings are made: "phonemes" (model durations) or "estimated"; None before start
    alignment: str | None


@dataclass(eq=False)
class _Request:
    id: int
    frame: bytes
    loop: asyncio.AbstractEventLoop
    #: seconds the worker may take over it
    budget_s: float
    #: the monotonic time by which the worker must have finished it (set when it gets it)
    due: float | None = None
    #: admitted by a half-open breaker: its outcome decides whether it closes
    probe: bool = False
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
    #: killed by the watchdog: the request it had missed its deadline of this many seconds
    timed_out: float | None = None
    #: when it was started (monotonic): it must be ready ``startup_timeout`` later
    started: float = field(default_factory=time.monotonic)
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
    (:data:`voices.emotion.PRESETS`) for this voice. ``deadline_s``, ``deadline_per_audio``,
    ``breaker_failures`` and ``breaker_cooldown_s``: see the module docstring.
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
        deadline_s: float = 2.0,
        deadline_per_audio: float = 0.5,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 10.0,
    ) -> None:
        self.name = "piper"
        self.max_queue = max_queue
        self.max_chars = max_chars
        self.startup_timeout = startup_timeout
        #: each request's time budget, from the audio it should make (:func:`expected_seconds`)
        self.deadline = Deadline(deadline_s, deadline_per_audio)
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
        self._stopped = self._restarts = self._timeouts = 0
        self._breaker = Breaker(self.name, failures=breaker_failures, cooldown_s=breaker_cooldown_s)
        #: crashes (or hangs) in a row, for the restart backoff; when the next worker starts
        self._crashes = 0
        self._respawn_at: float | None = None
        self._watchdog: threading.Thread | None = None

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
            self._respawn_at = None
            self._changed.notify_all()  # the watchdog ends
            watchdog = self._watchdog
        if watchdog is not None:
            watchdog.join()
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
        """Speak ``text`` or a plan; see :meth:`voices.engine.TTSEngine.synthesize`.

        Raises :class:`~pipeline.errors.ModelError` when the worker crashed or hung on it, or
        at once while the circuit breaker is open."""
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
        budget = self.deadline.budget(expected_seconds(plan))
        with self._lock:
            if self._closed:
                raise ExecutorClosed("the Piper engine is closed")
            if len(self._queue) >= self.max_queue:
                self._rejected += 1
                raise Overloaded(self.name, len(self._queue), self.max_queue)
            now = time.monotonic()
            if not self._breaker.admit(now):
                why = self._breaker.refusal(now)
                raise ModelError(f"the Piper voice is not taking requests: its worker {why}")
            request_id = next(self._ids)
            frame = encode(Synthesize(request_id, plan.segments))
            request = _Request(request_id, frame, loop, budget)
            request.probe = self._breaker.state is BreakerState.HALF_OPEN
            self._queue.append(request)
            if self._worker is None and self._respawn_at is None:
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
                if request.probe:  # never reached the worker: the next request probes
                    self._breaker.released(time.monotonic())

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
        self._respawn_at = None
        for thread in worker.threads:
            thread.start()
        if self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="piper-watchdog", daemon=True
            )
            self._watchdog.start()
        self._changed.notify_all()  # the watchdog learns its start deadline

    def _pump(self) -> None:
        worker = self._worker
        if self._in_flight is None and worker is not None and worker.ready and self._queue:
            request = self._in_flight = self._queue.popleft()
            request.due = time.monotonic() + request.budget_s
            worker.write(request.frame)
            self._changed.notify_all()  # the watchdog learns the new deadline

    def _watch(self) -> None:
        """Kill a worker that misses a request's deadline, or is not ready
        ``startup_timeout`` after it started; start a new one when its backoff is over.
        Runs until :meth:`close`."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                request, worker = self._in_flight, self._worker
                due = request.due if request is not None else None
                loading = None if worker is None or worker.ready else worker
                ready_by = None if loading is None else loading.started + self.startup_timeout
                if loading is not None and ready_by is not None and now >= ready_by:
                    if loading.fatal is None:
                        loading.fatal = f"not ready in {self.startup_timeout} s"
                        loading.process.kill()
                    ready_by = None
                if request is not None and due is not None and now >= due and worker:
                    request.due = None  # killed once; the reader reports the exit
                    worker.timed_out = request.budget_s
                    self._timeouts += 1
                    _LOGGER.error(
                        "the Piper worker (pid %d) did not finish a request in %.1f s: killed",
                        worker.process.pid,
                        request.budget_s,
                    )
                    worker.process.kill()
                    continue
                if self._respawn_at is not None and now >= self._respawn_at:
                    self._restarts += 1
                    self._spawn()
                    continue
                wakes = [t for t in (due, self._respawn_at, ready_by) if t is not None]
                self._changed.wait(min(wakes) - now if wakes else None)

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
                self._crashes = 0
                self._breaker.succeeded(time.monotonic())  # the worker answered
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
            now = time.monotonic()
            request = self._in_flight
            if request is not None:
                self._in_flight = None
                self._failed += 1
                self._breaker.failed(now)
                if worker.timed_out is not None:
                    why = f"the Piper worker timed out: no answer in {worker.timed_out:.1f} s"
                else:
                    why = f"the Piper worker died mid-request ({failure})"
                self._end(request, ModelError(why))
            if not worker.ready:
                if self._queue:
                    self._breaker.failed(now)
                for waiting in self._queue:
                    self._end(waiting, ModelError(f"the Piper worker failed to start: {failure}"))
                self._queue.clear()
                return
            jitter = random.random()  # spreads restarts out; nothing secret
            delay = backoff_delay(
                self._crashes, base_s=RESTART_BASE_S, cap_s=RESTART_CAP_S, jitter=jitter
            )
            self._crashes += 1
            _LOGGER.info("restarting the Piper worker in %.2f s", delay)
            self._respawn_at = now + delay
            self._changed.notify_all()

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
                timeouts=self._timeouts,
                breaker=self._breaker.statistics(),
                alignment=self._alignment,
            )


def expected_seconds(plan: SpeechPlan) -> float:
    """About how long ``plan`` sounds: its characters at :data:`CHARS_PER_SECOND`, divided by
    each segment's ``rate`` (times its ``length_scale``), plus its pauses."""
    seconds = 0.0
    for segment in plan.segments:
        prosody = segment.prosody
        slower = (prosody.length_scale or 1.0) / max(prosody.rate, 0.1)
        seconds += len(segment.text) / CHARS_PER_SECOND * slower + segment.pause_ms / 1000
    return seconds


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
