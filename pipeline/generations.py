"""Generations: every bot reply has an id and its own cancel scope.

Cancelling a generation cancels the work started for it (:meth:`Generations.start`) and makes
every channel registered with the registry drop that generation's data events, queued or sent
later. Other generations are not disturbed. Ids are positive and increase; ``0`` is the
caller's side and is never cancelled.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from pipeline.events import USER_GENERATION, Event
from pipeline.tasks import shed_frames

if TYPE_CHECKING:
    from pipeline.channels import Channel


class Generations:
    """The reply generations of one session."""

    def __init__(self) -> None:
        self._next = USER_GENERATION + 1
        self._cancelled: set[int] = set()
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._channels: weakref.WeakSet[Channel] = weakref.WeakSet()

    def register(self, channel: Channel) -> None:
        self._channels.add(channel)

    def new(self) -> int:
        """Allocate a generation id without starting work for it."""
        generation = self._next
        self._next += 1
        return generation

    @property
    def latest(self) -> int:
        """The most recently allocated id (``0`` before the first)."""
        return self._next - 1

    def start(
        self,
        task_group: anyio.abc.TaskGroup,
        fn: Callable[[int], Awaitable[object]],
        *,
        name: str = "generation",
    ) -> int:
        """Allocate an id and run ``fn(id)`` in ``task_group`` under its own cancel scope."""
        generation = self.new()
        scope = anyio.CancelScope()
        self._scopes[generation] = scope

        async def run() -> None:
            try:
                with scope:
                    await fn(generation)
            finally:
                self._scopes.pop(generation, None)

        # shed_frames: the call's frames go when it ends, not in anyio's cycle (pipeline.tasks)
        task_group.start_soon(shed_frames, run(), name=f"{name}-{generation}")
        return generation

    def cancel(self, generation: int) -> None:
        """Cancel ``generation``'s work and drop its events everywhere. Idempotent."""
        if generation == USER_GENERATION:
            raise ValueError("the caller's generation cannot be cancelled")
        self._cancelled.add(generation)
        scope = self._scopes.pop(generation, None)
        if scope is not None:
            scope.cancel()
        for channel in list(self._channels):
            channel.purge(generation)

    def is_cancelled(self, event: Event) -> bool:
        return event.generation in self._cancelled

    def cancelled(self, generation: int) -> bool:
        return generation in self._cancelled

    @property
    def running(self) -> frozenset[int]:
        return frozenset(self._scopes)
