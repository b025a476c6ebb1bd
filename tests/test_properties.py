"""Hypothesis properties of the runtime, each run on asyncio and on asyncio+uvloop.

- order is preserved through any chain of stages, whatever the capacities;
- nothing is lost under coalescing, and the item count stays bounded;
- memory stays bounded under a producer 100x faster than its consumer;
- cancelling one generation never touches another's events;
- no task is left running after a session ends, however it ends.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.channels import Channel, Policy
from pipeline.errors import StageFailed
from pipeline.events import AudioFrame, Event, TextChunk
from pipeline.runtime import Link, SessionRuntime, run_pipeline
from tests.stages import frames, joined_pcm, passthrough

BACKENDS = [
    pytest.param({}, id="asyncio"),
    pytest.param({"use_uvloop": True}, id="uvloop"),
]
PROPERTY = settings(max_examples=40, deadline=None)


def run(options: dict[str, Any], fn: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(10):
            await fn()

    anyio.run(bounded, backend="asyncio", backend_options=options)


async def pause(checkpoints: int) -> None:
    for _ in range(checkpoints):
        await anyio.lowlevel.checkpoint()


async def feed(channel: Channel, events: list[Event], every: int = 0) -> None:
    for event in events:
        await channel.send(event)
        await pause(every)
    channel.close()


@pytest.mark.parametrize("options", BACKENDS)
@given(
    count=st.integers(0, 60),
    capacities=st.lists(st.integers(1, 8), min_size=1, max_size=6),
    consumer_pause=st.integers(0, 3),
)
@PROPERTY
def test_order_is_preserved(
    options: dict[str, Any], count: int, capacities: list[int], consumer_pause: int
) -> None:
    sent = frames(count)

    async def main() -> None:
        source = Channel("source", capacities[0], Policy.BLOCK)
        sink = Channel("sink", capacities[-1], Policy.BLOCK)
        links = [Link(c, Policy.BLOCK) for c in capacities[:-1]]
        received: list[Event] = []

        async def consume() -> None:
            async for event in sink:
                received.append(event)
                await pause(consumer_pause)

        async with anyio.create_task_group() as tg:
            tg.start_soon(feed, source, sent)
            tg.start_soon(consume)
            await run_pipeline("s", [passthrough] * len(capacities), source, sink, links)
        assert received == sent

    run(options, main)


@pytest.mark.parametrize("options", BACKENDS)
@given(
    sizes=st.lists(st.integers(1, 960), min_size=1, max_size=80),
    capacity=st.integers(1, 4),
    consumer_pause=st.integers(0, 20),
)
@PROPERTY
def test_coalescing_loses_nothing_and_bounds_the_item_count(
    options: dict[str, Any], sizes: list[int], capacity: int, consumer_pause: int
) -> None:
    sent: list[Event] = []
    pts = 0
    for size in sizes:
        pcm = bytes((pts + i) % 256 for i in range(2 * size))
        sent.append(AudioFrame(session_id="s", sample_rate=16000, pcm=pcm, pts=pts))
        pts += size

    async def main() -> None:
        channel = Channel("c", capacity, Policy.COALESCE)
        received: list[Event] = []

        async def consume() -> None:
            async for event in channel:
                received.append(event)
                await pause(consumer_pause)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await feed(channel, sent)
        assert joined_pcm(received) == joined_pcm(sent)
        stats = channel.statistics()
        assert stats.high_water <= capacity
        assert stats.coalesced == len(sent) - len(received)
        audio = [e for e in received if isinstance(e, AudioFrame)]
        assert all(b.follows(a) for a, b in itertools.pairwise(audio))

    run(options, main)


@pytest.mark.parametrize("options", BACKENDS)
@pytest.mark.parametrize("policy", [Policy.BLOCK, Policy.DROP_OLDEST, Policy.COALESCE])
@given(capacity=st.integers(1, 16))
@settings(max_examples=10, deadline=None)
def test_memory_is_bounded_under_a_producer_100x_faster(
    options: dict[str, Any], policy: Policy, capacity: int
) -> None:
    # The consumer spends 100 scheduler turns per event; the producer one.
    sent = frames(300)
    max_samples = 320 * 8

    async def main() -> None:
        channel = Channel("c", capacity, policy, max_coalesced_samples=max_samples)
        received: list[Event] = []

        async def consume() -> None:
            async for event in channel:
                received.append(event)
                await pause(100)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await feed(channel, sent, every=1)
        stats = channel.statistics()
        assert stats.high_water <= capacity
        assert all(e.num_samples <= max_samples for e in received if isinstance(e, AudioFrame))
        if policy is Policy.DROP_OLDEST:
            assert stats.dropped > 0
            assert len(received) + stats.dropped == len(sent)
        else:
            assert joined_pcm(received) == joined_pcm(sent)

    run(options, main)


@pytest.mark.parametrize("options", BACKENDS)
@given(
    plan=st.lists(st.tuples(st.integers(1, 4), st.booleans()), min_size=1, max_size=60),
    stages=st.integers(1, 4),
    capacity=st.integers(1, 6),
)
@PROPERTY
def test_cancelling_one_generation_never_touches_another(
    options: dict[str, Any], plan: list[tuple[int, bool]], stages: int, capacity: int
) -> None:
    """``plan``: events in order, each (generation, cancel that generation right after)."""

    async def main() -> None:
        received: list[Event] = []
        cancelled: set[int] = set()
        async with SessionRuntime("s") as runtime:
            for _ in range(4):
                runtime.generations.new()
            channels = [runtime.channel(f"c{i}", capacity, Policy.BLOCK) for i in range(stages + 1)]
            for index in range(stages):
                runtime.start_stage(f"p{index}", passthrough, channels[index], channels[index + 1])

            async def consume() -> None:
                async for event in channels[-1]:
                    received.append(event)

            runtime.start_task("consume", consume)
            for index, (generation, cancel) in enumerate(plan):
                event = TextChunk(session_id="s", generation=generation, text=str(index))
                await channels[0].send(event)
                if cancel:
                    runtime.cancel_generation(generation)
                    cancelled.add(generation)
            channels[0].close()
        expected = [str(i) for i, (g, _) in enumerate(plan) if g not in cancelled]
        kept = [
            e.text for e in received if isinstance(e, TextChunk) and e.generation not in cancelled
        ]
        assert kept == expected

    run(options, main)


@pytest.mark.parametrize("options", BACKENDS)
@given(
    stages=st.integers(1, 5),
    failing=st.one_of(st.none(), st.integers(0, 4)),
    fail_after_events=st.integers(0, 5),
    count=st.integers(0, 10),
)
@PROPERTY
def test_no_task_outlives_its_session(
    options: dict[str, Any], stages: int, failing: int | None, fail_after_events: int, count: int
) -> None:
    async def broken(inbox: Channel, outbox: Channel) -> None:
        for _ in range(fail_after_events):
            await outbox.send(await inbox.receive())
        raise RuntimeError("boom")

    async def main() -> None:
        before = asyncio.all_tasks()
        chain = [broken if i == failing else passthrough for i in range(stages)]
        source = Channel("source", 16, Policy.BLOCK)
        sink = Channel("sink", 16, Policy.DROP_OLDEST)
        for event in frames(count):
            source.send_nowait(event)
        source.close()
        try:
            await run_pipeline("s", chain, source, sink)
        except StageFailed:
            assert failing is not None
            assert failing < stages
        else:
            assert failing is None or failing >= stages
        assert asyncio.all_tasks() <= before
        assert sink.closed

    run(options, main)
