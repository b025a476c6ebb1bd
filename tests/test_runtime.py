"""The session runtime: stages, failure, generations, cleanup."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from pipeline.channels import Channel, Policy
from pipeline.errors import StageFailed
from pipeline.events import Event, Interrupt, TextChunk
from pipeline.runtime import Link, SessionRuntime, run_pipeline
from tests.stages import frames, passthrough

pytestmark = pytest.mark.anyio


async def test_a_pipeline_delivers_every_event_in_order_then_closes_the_sink() -> None:
    source = Channel("source", 64, Policy.BLOCK)
    sink = Channel("sink", 64, Policy.BLOCK)
    sent = frames(40)
    for event in sent:
        source.send_nowait(event)
    source.close()
    with anyio.fail_after(5):
        stats = await run_pipeline("s", [passthrough] * 4, source, sink, Link(2, Policy.BLOCK))
    assert [e async for e in sink] == sent
    assert [s.sent for s in stats] == [40, 40, 40]
    assert all(s.high_water <= 2 for s in stats)


async def test_links_must_match_the_stages() -> None:
    source, sink = Channel("a", 1, Policy.BLOCK), Channel("b", 1, Policy.BLOCK)
    with pytest.raises(ValueError, match="3 stages need 2 links"):
        await run_pipeline("s", [passthrough] * 3, source, sink, [Link()])


async def test_a_failing_stage_fails_the_session_with_one_typed_error() -> None:
    async def broken(inbox: Channel, outbox: Channel) -> None:
        await inbox.receive()
        raise ZeroDivisionError

    source = Channel("source", 4, Policy.BLOCK)
    sink = Channel("sink", 4, Policy.BLOCK)
    source.send_nowait(frames(1)[0])  # the source stays open: other stages are left waiting
    before = asyncio.all_tasks()
    with anyio.fail_after(5), pytest.raises(StageFailed, match="broken") as info:
        await run_pipeline("s", [passthrough, broken, passthrough], source, sink)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert asyncio.all_tasks() <= before
    assert sink.closed


async def test_a_cancelled_generation_stops_and_its_events_vanish() -> None:
    async with SessionRuntime("s") as runtime:
        out = runtime.channel("out", 16, Policy.BLOCK)
        release = anyio.Event()
        finished: list[int] = []

        async def reply(generation: int) -> None:
            await out.send(TextChunk(session_id="s", generation=generation, text="hello"))
            await release.wait()
            finished.append(generation)

        first = runtime.start_generation(reply)
        second = runtime.start_generation(reply)
        await wait_all_tasks_blocked()
        runtime.cancel_generation(first)
        release.set()
        await wait_all_tasks_blocked()
        out.close()
        remaining = [e async for e in out]
    assert finished == [second]
    assert remaining == [TextChunk(session_id="s", generation=second, text="hello")]
    assert runtime.generations.running == frozenset()


async def test_a_failing_generation_fails_the_session() -> None:
    async def reply(generation: int) -> None:
        raise RuntimeError("model exploded")

    with anyio.fail_after(5), pytest.raises(StageFailed, match="reply-1"):
        async with SessionRuntime("s") as runtime:
            runtime.start_generation(reply)
            await anyio.sleep_forever()


async def test_control_events_reach_the_end_first() -> None:
    source = Channel("source", 64, Policy.BLOCK)
    sink = Channel("sink", 64, Policy.BLOCK)
    for event in frames(10):
        source.send_nowait(event)
    source.send_nowait(Interrupt(session_id="s", generation=1))
    source.close()
    with anyio.fail_after(5):
        await run_pipeline("s", [passthrough] * 2, source, sink, Link(64, Policy.BLOCK))
    received: list[Event] = [e async for e in sink]
    assert isinstance(received[0], Interrupt)
    assert received[1:] == frames(10)


async def test_ending_the_session_cancels_every_stage() -> None:
    before = asyncio.all_tasks()
    with anyio.fail_after(5):
        async with SessionRuntime("s") as runtime:
            inbox = runtime.channel("in", 1, Policy.BLOCK)
            outbox = runtime.channel("out", 1, Policy.BLOCK)
            runtime.start_stage("idle", passthrough, inbox, outbox)
            await wait_all_tasks_blocked()
            runtime.cancel()
    assert asyncio.all_tasks() <= before
    assert outbox.closed
