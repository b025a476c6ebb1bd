"""One worker thread per model per device, shared by every session.

A :class:`ModelExecutor` owns a plain :class:`threading.Thread` (a CUDA context, an ONNX
session or a CTranslate2 model stays on the thread that made it) and a bounded queue of
requests. Async callers ``await executor.run(request)``; the worker runs the model and hands each
result back to its caller's event loop with ``loop.call_soon_threadsafe``, so the event loop never
waits for a model. The only lock the loop ever takes guards the queue and the counters, and the
worker never holds it while a model runs.

Rules:

- **Priorities.** ``run(request, priority=p)``: the worker takes waiting requests highest
  priority first, in arrival order within a priority (the ASR gives an utterance's final a higher
  priority than partials, so one call's final never waits behind other calls' partials).
- **Admission control.** A request that finds ``max_queue`` requests already waiting is refused
  at once with :class:`~pipeline.errors.Overloaded`; nothing waits for room. One exception: a
  request of higher priority than the lowest waiting one takes the place of the newest of those
  (which is refused with :class:`~pipeline.errors.Overloaded`, counted in ``preempted``).
- **Micro-batching.** With ``batch_fn`` the worker, whenever it becomes free, takes up to
  ``max_batch`` of the requests waiting then (natural batching: no timers; by priority, as
  above) and expects one result per request, in order. With ``batch_key`` too, a batch holds
  the first request in that order and only waiting requests of its priority and its key (the
  ASR: finals batch with finals, partials with partials, windows of one length and beam); a
  request whose key cannot be computed runs alone.
- **Cancellation.** A caller cancelled while its request waits removes the request: it never
  runs. A caller cancelled while its request runs gets nothing and the result is discarded.
  Both are counted; no other caller is affected.
- **Errors.** An exception from the model reaches every caller of that batch as
  :class:`~pipeline.errors.ModelError` raised from the original (so is a ``batch_fn`` returning
  the wrong number of results); the worker keeps running. A ``batch_fn`` may put an exception
  in a request's place among its results: that caller alone gets it as the cause of its
  :class:`~pipeline.errors.ModelError`.
- **Shutdown.** :meth:`ModelExecutor.close` fails waiting callers with
  :class:`~pipeline.errors.ExecutorClosed`, lets the running batch finish and deliver, and joins
  the thread.

An :class:`ExecutorRegistry` keeps exactly one executor per (model name, device).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Generic, TypeVar, cast

from pipeline.errors import ExecutorClosed, ModelError, Overloaded

#: how many recent requests' waits :meth:`ModelExecutor.queue_wait` keeps, per priority (so
#: many partials cannot push the finals' out of the window)
_WAITS_KEPT = 128

Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass(frozen=True, slots=True)
class ExecutorStatistics:
    name: str
    device: str
    #: requests waiting now (not counting the batch being run)
    queue_depth: int
    max_queue: int
    max_batch: int
    #: the worker thread is alive and accepting work
    running: bool
    #: requests in the batch being run now
    in_flight: int
    #: share of the time since :meth:`ModelExecutor.start` spent inside the model (0 to 1)
    busy_fraction: float
    #: requests the model completed (including results discarded for cancelled callers)
    requests_done: int
    #: requests whose batch raised (or returned the wrong number of results), or whose own
    #: result was an exception
    requests_failed: int
    #: requests refused with :class:`~pipeline.errors.Overloaded` (``preempted`` included)
    rejected: int
    #: of ``rejected``, waiting requests whose place a request of higher priority took
    preempted: int
    #: callers cancelled before their result reached them
    cancelled: int
    #: of ``cancelled``, requests the worker had already taken: run, then the result thrown away
    discarded: int
    batches: int
    #: ``batch_sizes[i]`` is the number of batches of ``i + 1`` requests
    batch_sizes: tuple[int, ...]

    @property
    def mean_batch_size(self) -> float:
        total = sum((i + 1) * n for i, n in enumerate(self.batch_sizes))
        return total / self.batches if self.batches else 0.0

    @property
    def largest_batch(self) -> int:
        return max((i + 1 for i, n in enumerate(self.batch_sizes) if n), default=0)


@dataclass(eq=False, slots=True)
class _Item(Generic[Req, Res]):
    request: Req
    loop: asyncio.AbstractEventLoop
    priority: int = 0
    #: requests batch only with others of the same key and priority (``batch_key``)
    key: Hashable = None
    #: when it was queued (``time.perf_counter``)
    queued_at: float = field(default_factory=time.perf_counter)
    future: asyncio.Future[Res] = field(init=False)
    #: set (under the lock) when the worker takes the request off the queue
    taken: bool = False

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Runs on the caller's loop. A cancelled caller's future is already done: skip it."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ModelExecutor(Generic[Req, Res]):
    """A bounded queue of requests in front of one model on one worker thread.

    Give exactly one of ``fn`` (one request at a time) or ``batch_fn`` (a list of up to
    ``max_batch`` requests in, one result per request out, in order). ``init`` runs on the
    worker thread before any request: load the model there.
    """

    def __init__(
        self,
        name: str,
        *,
        fn: Callable[[Req], Res] | None = None,
        batch_fn: Callable[[list[Req]], Sequence[Res | Exception]] | None = None,
        max_batch: int = 1,
        batch_key: Callable[[Req], Hashable] | None = None,
        max_queue: int = 64,
        device: str = "cpu",
        init: Callable[[], None] | None = None,
    ) -> None:
        if (fn is None) == (batch_fn is None):
            raise ValueError("give exactly one of fn and batch_fn")
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        if fn is not None and max_batch != 1:
            raise ValueError("max_batch > 1 needs batch_fn")
        self.name = name
        self.device = device
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._fn = fn
        self._batch_fn = batch_fn
        self._batch_key = batch_key
        self._init = init
        self._queue: deque[_Item[Req, Res]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._init_error: BaseException | None = None
        self._closing = False
        self._in_flight = 0
        self._started_at = 0.0
        self._stopped_at: float | None = None
        self._busy_since: float | None = None
        self._busy = 0.0
        self._done = 0
        self._failed = 0
        self._rejected = 0
        self._preempted = 0
        self._cancelled = 0
        self._discarded = 0
        self._batch_sizes = [0] * max_batch
        #: by priority, (taken at, waited) of the requests taken lately, for :meth:`queue_wait`
        self._waits: dict[int, deque[tuple[float, float]]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and wait until ``init`` has run on it.

        Blocks for as long as ``init`` takes: call it at start-up, or from async code through
        ``anyio.to_thread.run_sync``. Raises :class:`ModelError` if ``init`` fails.
        """
        if self._thread is not None or self._closing:
            raise RuntimeError(f"executor {self.name!r} was already started or closed")
        self._started_at = time.perf_counter()
        self._thread = threading.Thread(
            target=self._work, name=f"executor:{self.name}@{self.device}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._init_error is not None:
            self._thread.join()
            raise ModelError(f"model {self.name!r} failed to load") from self._init_error

    def close(self) -> None:
        """Fail waiting callers with :class:`ExecutorClosed`, finish the running batch, join.

        Blocks until the running batch ends. Idempotent.
        """
        with self._cond:
            self._closing = True
            orphans = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for item in orphans:
            error = ExecutorClosed(f"executor {self.name!r} on {self.device} closed")
            self._deliver(item, None, error)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._stopped_at is None:
            self._stopped_at = time.perf_counter()

    def __enter__(self) -> ModelExecutor[Req, Res]:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the async side ------------------------------------------------------------------------

    async def run(self, request: Req, *, priority: int = 0) -> Res:
        """Queue ``request`` and wait for its result; higher ``priority`` runs first.

        Raises :class:`Overloaded` at once when ``max_queue`` requests of this priority or
        higher are waiting (or later, if a request of higher priority takes this one's place),
        :class:`ExecutorClosed` once the executor is closed, :class:`ModelError` when the model
        fails. Cancel-safe: a cancelled caller's request is removed, or its result discarded.
        """
        if self._thread is None:
            raise RuntimeError(f"executor {self.name!r} was not started")
        item: _Item[Req, Res] = _Item(
            request, asyncio.get_running_loop(), priority, self._key(request)
        )
        evicted: _Item[Req, Res] | None = None
        with self._cond:
            if self._closing:
                raise ExecutorClosed(f"executor {self.name!r} on {self.device} is closed")
            if len(self._queue) >= self.max_queue:
                evicted = self._evictable(priority)
                if evicted is None:
                    self._rejected += 1
                    raise Overloaded(
                        f"executor {self.name!r} on {self.device}",
                        len(self._queue),
                        self.max_queue,
                    )
                self._queue.remove(evicted)
                self._rejected += 1
                self._preempted += 1
            self._queue.append(item)
            self._cond.notify()
        if evicted is not None:
            error = Overloaded(
                f"executor {self.name!r} on {self.device} (preempted)",
                self.max_queue,
                self.max_queue,
            )
            if evicted.loop is item.loop:
                _settle(evicted.future, None, error)
            else:
                self._deliver(evicted, None, error)
        try:
            return await item.future
        except asyncio.CancelledError:
            self._abandon(item)
            raise

    def _key(self, request: Req) -> Hashable:
        if self._batch_key is None:
            return None
        try:
            return self._batch_key(request)
        except Exception:  # a request the model will refuse: it runs alone and fails there
            return object()

    def _evictable(self, priority: int) -> _Item[Req, Res] | None:
        """The newest waiting request of the lowest priority, if that is below ``priority``."""
        lowest = min(item.priority for item in self._queue)
        if lowest >= priority:
            return None
        return next(item for item in reversed(self._queue) if item.priority == lowest)

    def _take(self, count: int) -> list[_Item[Req, Res]]:
        """Remove and return up to ``count`` waiting requests: highest priority first, then
        oldest (with ``batch_key``: of the first one's priority and key)."""
        first = self._queue[0].priority
        if self._batch_key is None and all(item.priority == first for item in self._queue):
            return [self._queue.popleft() for _ in range(count)]
        ordered = sorted(self._queue, key=lambda item: -item.priority)
        if self._batch_key is not None:
            head = ordered[0]
            ordered = [i for i in ordered if i.priority == head.priority and i.key == head.key]
        chosen = ordered[:count]
        for item in chosen:
            self._queue.remove(item)
        return chosen

    def _abandon(self, item: _Item[Req, Res]) -> None:
        with self._cond:
            self._cancelled += 1
            if item.taken:
                self._discarded += 1
            elif item in self._queue:
                self._queue.remove(item)
        future = item.future
        if future.done() and not future.cancelled():
            future.exception()  # a result nobody will read: keep asyncio from logging it

    # -- the worker thread ---------------------------------------------------------------------

    def _work(self) -> None:
        try:
            if self._init is not None:
                self._init()
        except BaseException as exc:  # handed to start(), which raises it
            self._init_error = exc
            with self._cond:
                self._closing = True
            return
        finally:
            self._ready.set()
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                batch = self._take(min(self.max_batch, len(self._queue)))
                count = len(batch)
                self._busy_since = now = time.perf_counter()
                for item in batch:
                    item.taken = True
                    waits = self._waits.setdefault(item.priority, deque(maxlen=_WAITS_KEPT))
                    waits.append((now, now - item.queued_at))
                self._in_flight = count
            results, failure = self._call([item.request for item in batch])
            with self._cond:
                assert self._busy_since is not None
                self._busy += time.perf_counter() - self._busy_since
                self._busy_since = None
                self._in_flight = 0
                self._batch_sizes[count - 1] += 1
                if failure is None:
                    failed = sum(isinstance(result, Exception) for result in results)
                    self._done += count - failed
                    self._failed += failed
                else:
                    self._failed += count
            for i, item in enumerate(batch):
                result = results[i] if failure is None else None
                if isinstance(result, Exception):
                    error = ModelError(f"model {self.name!r} failed on a request")
                    error.__cause__ = result
                    self._deliver(item, None, error)
                elif failure is None:
                    self._deliver(item, cast("Res", result), None)
                else:
                    message, cause = failure
                    error = ModelError(message)  # one per caller: each raise adds its traceback
                    error.__cause__ = cause
                    self._deliver(item, None, error)

    def _call(
        self, requests: list[Req]
    ) -> tuple[Sequence[Res | Exception], tuple[str, BaseException | None] | None]:
        """Run the model; return the results, or why they failed and the original error."""
        try:
            if self._fn is not None:
                return [self._fn(requests[0])], None
            assert self._batch_fn is not None
            results = self._batch_fn(requests)
        except BaseException as exc:  # goes to the callers; the worker survives
            return [], (f"model {self.name!r} failed on a batch of {len(requests)}", exc)
        if len(results) != len(requests):
            message = (
                f"batch_fn of {self.name!r} returned {len(results)} results "
                f"for {len(requests)} requests"
            )
            return [], (message, None)
        return results, None

    @staticmethod
    def _deliver(item: _Item[Req, Res], result: Res | None, error: BaseException | None) -> None:
        # RuntimeError: the caller's loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            item.loop.call_soon_threadsafe(_settle, item.future, result, error)

    # -- statistics ----------------------------------------------------------------------------

    def queue_wait(self, priority: int, window_s: float) -> float:
        """How long requests of ``priority`` wait before the worker takes them, lately: the
        median wait of those taken in the last ``window_s`` seconds and the age of those still
        waiting (0.0 when there are none). It measures the load a model cannot absorb: requests
        of lower priority never delay these beyond the batch already running."""
        with self._cond:
            now = time.perf_counter()
            since = now - window_s
            waits = [w for at, w in self._waits.get(priority, ()) if at >= since]
            waits += [now - item.queued_at for item in self._queue if item.priority == priority]
        return median(waits) if waits else 0.0

    def statistics(self) -> ExecutorStatistics:
        with self._cond:
            now = self._stopped_at if self._stopped_at is not None else time.perf_counter()
            busy = self._busy
            if self._busy_since is not None:
                busy += now - self._busy_since
            elapsed = now - self._started_at if self._thread is not None else 0.0
            return ExecutorStatistics(
                name=self.name,
                device=self.device,
                queue_depth=len(self._queue),
                max_queue=self.max_queue,
                max_batch=self.max_batch,
                running=self._thread is not None and not self._closing,
                in_flight=self._in_flight,
                busy_fraction=min(1.0, busy / elapsed) if elapsed > 0 else 0.0,
                requests_done=self._done,
                requests_failed=self._failed,
                rejected=self._rejected,
                preempted=self._preempted,
                cancelled=self._cancelled,
                discarded=self._discarded,
                batches=sum(self._batch_sizes),
                batch_sizes=tuple(self._batch_sizes),
            )


class ExecutorRegistry:
    """Exactly one started executor per (model name, device), shared by every session."""

    def __init__(self) -> None:
        self._executors: dict[tuple[str, str], ModelExecutor[Any, Any]] = {}
        self._lock = threading.Lock()

    def get_or_create(
        self, model: str, device: str, factory: Callable[[], ModelExecutor[Req, Res]]
    ) -> ModelExecutor[Req, Res]:
        """Return the executor for (``model``, ``device``), building and starting it if needed.

        ``factory`` must build an executor with that name and device. Starting runs its
        ``init`` (blocking); an executor whose start fails is not kept.
        """
        with self._lock:
            existing = self._executors.get((model, device))
            if existing is not None:
                return cast("ModelExecutor[Req, Res]", existing)
            executor = factory()
            if (executor.name, executor.device) != (model, device):
                raise ValueError(
                    f"factory for ({model!r}, {device!r}) built "
                    f"({executor.name!r}, {executor.device!r})"
                )
            executor.start()
            self._executors[(model, device)] = executor
            return executor

    def statistics(self) -> list[ExecutorStatistics]:
        with self._lock:
            executors = list(self._executors.values())
        return [executor.statistics() for executor in executors]

    def close_all(self) -> None:
        """Close every executor (each fails its waiting callers) and forget them."""
        with self._lock:
            executors = list(self._executors.values())
            self._executors.clear()
        for executor in executors:
            executor.close()
