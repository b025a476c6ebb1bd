"""Channels: policies, control priority, closing, cancel safety, statistics."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from anyio import wait_all_tasks_blocked
from anyio.abc import TaskStatus

from pipeline.channels import Channel, Policy
from pipeline.events import AudioFrame, EndOfInput, Interrupt, TextChunk
from pipeline.generations import Generations

pytestmark = pytest.mark.anyio


def frame(pts: int, samples: int = 320, generation: int = 0, session: str = "s") -> AudioFrame:
    return AudioFrame(
        session_id=session,
        generation=generation,
        sample_rate=16000,
        pcm=bytes([pts % 251]) * (2 * samples),
        pts=pts,
    )


def text(value: str, generation: int = 1) -> TextChunk:
    return TextChunk(session_id="s", generation=generation, text=value)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Channel("c", 0, Policy.BLOCK)


def test_block_refuses_when_full_and_counts_depth() -> None:
    channel = Channel("c", 2, Policy.BLOCK)
    channel.send_nowait(text("a"))
    channel.send_nowait(text("b"))
    with pytest.raises(anyio.WouldBlock):
        channel.send_nowait(text("c"))
    stats = channel.statistics()
    assert (stats.depth, stats.high_water, stats.sent) == (2, 2, 2)


def test_drop_oldest_discards_and_counts() -> None:
    channel = Channel("c", 2, Policy.DROP_OLDEST)
    for value in "abcd":
        channel.send_nowait(text(value))
    received = [channel.receive_nowait(), channel.receive_nowait()]
    assert [e.text for e in received if isinstance(e, TextChunk)] == ["c", "d"]
    assert channel.statistics().dropped == 2


def test_coalesce_merges_contiguous_frames_into_the_newest() -> None:
    channel = Channel("c", 2, Policy.COALESCE)
    for index in range(5):
        channel.send_nowait(frame(index * 320))
    first, second = channel.receive_nowait(), channel.receive_nowait()
    assert isinstance(first, AudioFrame)
    assert isinstance(second, AudioFrame)
    assert (first.pts, first.num_samples) == (0, 320)
    assert (second.pts, second.num_samples) == (320, 4 * 320)
    assert channel.statistics().coalesced == 3


def test_coalesce_waits_rather_than_merge_across_a_gap() -> None:
    channel = Channel("c", 1, Policy.COALESCE)
    channel.send_nowait(frame(0))
    with pytest.raises(anyio.WouldBlock):
        channel.send_nowait(frame(999))


def test_coalesce_respects_the_size_bound() -> None:
    channel = Channel("c", 1, Policy.COALESCE, max_coalesced_samples=640)
    channel.send_nowait(frame(0))
    channel.send_nowait(frame(320))
    with pytest.raises(anyio.WouldBlock):
        channel.send_nowait(frame(640))


def test_control_events_overtake_data() -> None:
    channel = Channel("c", 4, Policy.BLOCK)
    channel.send_nowait(text("a"))
    channel.send_nowait(text("b"))
    channel.send_nowait(Interrupt(session_id="s", generation=1))
    assert isinstance(channel.receive_nowait(), Interrupt)
    assert channel.receive_nowait() == text("a")


def test_control_events_are_never_coalesced_or_dropped() -> None:
    channel = Channel("c", 1, Policy.DROP_OLDEST, control_capacity=2)
    channel.send_nowait(EndOfInput(session_id="s"))
    channel.send_nowait(Interrupt(session_id="s", generation=1))
    with pytest.raises(anyio.WouldBlock):
        channel.send_nowait(Interrupt(session_id="s", generation=2))
    assert channel.statistics().dropped == 0


def test_close_lets_receivers_drain_then_ends() -> None:
    channel = Channel("c", 4, Policy.BLOCK)
    channel.send_nowait(text("a"))
    channel.close()
    with pytest.raises(anyio.ClosedResourceError):
        channel.send_nowait(text("b"))
    assert channel.receive_nowait() == text("a")
    with pytest.raises(anyio.EndOfStream):
        channel.receive_nowait()


def test_cancelled_generations_are_purged_and_refused() -> None:
    generations = Generations()
    channel = Channel("c", 8, Policy.BLOCK, generations=generations)
    one, two = generations.new(), generations.new()
    channel.send_nowait(text("x", one))
    channel.send_nowait(text("y", two))
    generations.cancel(one)
    channel.send_nowait(text("z", one))
    assert channel.receive_nowait() == text("y", two)
    with pytest.raises(anyio.WouldBlock):
        channel.receive_nowait()
    assert channel.statistics().purged == 2


async def test_a_blocked_sender_resumes_when_the_receiver_takes() -> None:
    channel = Channel("c", 1, Policy.BLOCK)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await channel.send(text("a"))
            tg.start_soon(channel.send, text("b"))
            await wait_all_tasks_blocked()
            assert channel.statistics().blocked_sends == 1
            assert await channel.receive() == text("a")
            assert await channel.receive() == text("b")


async def test_a_waiting_receiver_wakes_on_send_and_on_close() -> None:
    channel = Channel("c", 1, Policy.BLOCK)
    got: list[object] = []

    async def drain(*, task_status: TaskStatus[None]) -> None:
        task_status.started()
        got.extend([event async for event in channel])

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(drain)
            await channel.send(text("a"))
            await wait_all_tasks_blocked()
            channel.close()
    assert got == [text("a")]


async def test_a_cancelled_receive_takes_nothing() -> None:
    channel = Channel("c", 2, Policy.BLOCK)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.receive)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        await channel.send(text("a"))
        assert await channel.receive() == text("a")


async def test_a_woken_receiver_cancelled_before_it_runs_loses_nothing() -> None:
    channel = Channel("c", 2, Policy.BLOCK)
    got: list[object] = []

    async def receive_into(scope: anyio.CancelScope) -> None:
        with scope:
            got.append(await channel.receive())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            first_scope = anyio.CancelScope()
            tg.start_soon(receive_into, first_scope)
            await wait_all_tasks_blocked()
            tg.start_soon(receive_into, anyio.CancelScope())
            await wait_all_tasks_blocked()
            channel.send_nowait(text("a"))  # wakes the first receiver...
            first_scope.cancel()  # ...which is cancelled before it runs
            await wait_all_tasks_blocked()
            channel.send_nowait(text("b"))
    # every event is either delivered to a receive that returned it, or still queued
    stats = channel.statistics()
    assert stats.received == len(got)
    assert stats.depth + len(got) == 2
    assert text("b") in got
