"""The fake model and callers the executor tests steer (see tests/test_executor.py)."""

from __future__ import annotations

import threading
from types import TracebackType

import anyio

from pipeline.errors import ExecutorClosed, ModelError, Overloaded
from pipeline.executor import ModelExecutor


class Model:
    """A fake model: multiplies by ten, records its batches and threads, holds on ``hold``."""

    def __init__(self, hold: frozenset[int] = frozenset()) -> None:
        self.hold = hold
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()
        self.entered = threading.Event()
        self.release = threading.Event()

    def batch(self, requests: list[int]) -> list[int]:
        self.batches.append(list(requests))
        self.threads.add(threading.get_ident())
        if self.hold & set(requests):
            self.entered.set()
            self.release.wait()
        return [r * 10 for r in requests]

    def one(self, request: int) -> int:
        return self.batch([request])[0]

    @property
    def ran(self) -> list[int]:
        return [r for batch in self.batches for r in batch]

    async def wait_entered(self) -> None:
        """Wait until the worker is held inside the model."""
        await anyio.to_thread.run_sync(self.entered.wait, abandon_on_cancel=True)

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release.set()  # never leave the worker held, or close() would wait for ever


async def collect(executor: ModelExecutor[int, int], request: int, into: dict[int, object]) -> None:
    """Run ``request`` and record its result or its error under its own key."""
    try:
        into[request] = await executor.run(request)
    except (ModelError, ExecutorClosed) as exc:
        into[request] = exc


async def collect_at(
    executor: ModelExecutor[int, int], request: int, priority: int, into: dict[int, object]
) -> None:
    """Like :func:`collect`, at ``priority``, recording :class:`Overloaded` too."""
    try:
        into[request] = await executor.run(request, priority=priority)
    except (ModelError, ExecutorClosed, Overloaded) as exc:
        into[request] = exc


def worker_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"executor:{name}@cpu"]
