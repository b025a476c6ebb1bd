"""The session runtime: one task group that owns every stage and generation of a call.

::

    async with SessionRuntime("call-1") as rt:
        audio = rt.channel("transport->vad", 8, Policy.COALESCE)
        ...
        rt.start_stage("vad", vad, audio, speech)
        reply = rt.start_generation(speak)        # its own cancel scope
        rt.cancel_generation(reply)               # barge-in: cancel it, purge its events

Rules:

- A stage is an async callable ``(inbox, outbox)``. When it returns or fails, its outbox is
  closed, so the next stage drains what is queued and then sees the end of the stream.
- The first exception raised by a stage or a generation cancels everything else in the session,
  and leaving the ``async with`` raises :class:`~pipeline.errors.StageFailed` from it: one typed
  error for the caller, never an exception group, and no task left behind.
- Channels made through :meth:`SessionRuntime.channel` know the session's generations, so a
  cancelled reply's events vanish from all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import anyio
import anyio.abc

from pipeline.channels import Channel, ChannelStatistics, Policy
from pipeline.errors import StageFailed
from pipeline.generations import Generations
from pipeline.tasks import shed_frames


class Stage(Protocol):
    async def __call__(self, inbox: Channel, outbox: Channel, /) -> None: ...


@dataclass(frozen=True, slots=True)
class Link:
    """How two neighbouring stages are joined: a capacity and a stated policy."""

    capacity: int = 32
    policy: Policy = Policy.BLOCK


def stage_name(stage: object) -> str:
    name = getattr(stage, "name", None) or getattr(stage, "__name__", None)
    return str(name) if name else type(stage).__name__


class SessionRuntime:
    """Owns the task group, the channels and the generations of one session."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.generations = Generations()
        self._channels: list[Channel] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._failure: tuple[str, Exception] | None = None

    async def __aenter__(self) -> SessionRuntime:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        try:
            handled = await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._task_group = None
            for channel in self._channels:
                channel.close()
        if self._failure is not None:
            name, error = self._failure
            raise StageFailed(name) from error
        return handled

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise RuntimeError("the session runtime is not running")
        return self._task_group

    def channel(
        self,
        name: str,
        capacity: int,
        policy: Policy,
        **options: int,
    ) -> Channel:
        """A channel owned by this session; closed when the session ends."""
        channel = Channel(name, capacity, policy, generations=self.generations, **options)
        self._channels.append(channel)
        return channel

    def start_stage(self, name: str, stage: Stage, inbox: Channel, outbox: Channel) -> None:
        async def run() -> None:
            try:
                await self._guarded(name, stage(inbox, outbox))
            finally:
                outbox.close()

        # shed_frames: the call's frames go when it ends, not in anyio's cycle (pipeline.tasks)
        self.task_group.start_soon(shed_frames, run(), name=f"{self.session_id}:{name}")

    def start_task(self, name: str, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``fn()`` in the session, under the same failure rule as stages."""

        async def run() -> None:
            await self._guarded(name, fn())

        self.task_group.start_soon(shed_frames, run(), name=f"{self.session_id}:{name}")

    def start_generation(self, fn: Callable[[int], Awaitable[object]], name: str = "reply") -> int:
        """Start a bot reply in its own cancel scope; return its generation id."""

        async def run(generation: int) -> None:
            await self._guarded(f"{name}-{generation}", fn(generation))

        return self.generations.start(self.task_group, run, name=f"{self.session_id}:{name}")

    def cancel_generation(self, generation: int) -> None:
        self.generations.cancel(generation)

    def cancel(self) -> None:
        """End the session: cancel every stage and generation."""
        self.task_group.cancel_scope.cancel()

    def statistics(self) -> list[ChannelStatistics]:
        return [channel.statistics() for channel in self._channels]

    async def _guarded(self, name: str, work: Awaitable[object]) -> None:
        try:
            await work
        except Exception as error:
            if self._failure is None:
                self._failure = (name, error)
            self.task_group.cancel_scope.cancel()


async def run_pipeline(
    session_id: str,
    stages: Sequence[Stage],
    source: Channel,
    sink: Channel,
    links: Sequence[Link] | Link = Link(),
) -> list[ChannelStatistics]:
    """Run ``source -> stages[0] -> ... -> stages[-1] -> sink`` until the stages finish.

    ``links`` gives the channel between each pair of neighbouring stages (one for all, or
    ``len(stages) - 1``). Returns the statistics of those inner channels.
    """
    if not stages:
        raise ValueError("a pipeline needs at least one stage")
    if isinstance(links, Link):
        links = [links] * (len(stages) - 1)
    if len(links) != len(stages) - 1:
        raise ValueError(f"{len(stages)} stages need {len(stages) - 1} links, got {len(links)}")
    async with SessionRuntime(session_id) as runtime:
        inbox = source
        for index, stage in enumerate(stages):
            if index == len(stages) - 1:
                outbox = sink
            else:
                link = links[index]
                outbox = runtime.channel(f"{stage_name(stage)}->", link.capacity, link.policy)
            runtime.start_stage(stage_name(stage), stage, inbox, outbox)
            inbox = outbox
    return runtime.statistics()
