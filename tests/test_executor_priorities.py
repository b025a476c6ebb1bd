"""ModelExecutor priorities: the order waiting requests run in, who a full queue refuses, and
how long each priority waits.

Steered as in tests/test_executor.py: the worker is held inside one request while callers queue.
"""

from __future__ import annotations

import time

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from pipeline.errors import Overloaded
from pipeline.executor import ModelExecutor
from tests.executor_support import Model, collect, collect_at

# -- priorities --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_waiting_requests_run_highest_priority_first_then_in_arrival_order() -> None:
    model = Model(hold=frozenset({0}))
    with anyio.fail_after(10), ModelExecutor("m", fn=model.one) as executor, model:
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()
            for request, priority in [(1, 0), (2, 0), (3, 1), (4, 0), (5, 1), (6, -1), (7, 2)]:
                tg.start_soon(collect_at, executor, request, priority, got)
            await wait_all_tasks_blocked()
            model.release.set()
    assert model.ran == [0, 7, 3, 5, 1, 2, 4, 6]
    assert got == {i: i * 10 for i in range(8)}


@pytest.mark.anyio
async def test_a_batch_takes_the_highest_priorities_waiting() -> None:
    model = Model(hold=frozenset({0}))
    with (
        anyio.fail_after(10),
        ModelExecutor("m", batch_fn=model.batch, max_batch=2) as executor,
        model,
    ):
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()
            for request, priority in [(1, 0), (2, 0), (3, 1), (4, 0), (5, 1)]:
                tg.start_soon(collect_at, executor, request, priority, got)
            await wait_all_tasks_blocked()
            model.release.set()
    assert model.batches == [[0], [3, 5], [1, 2], [4]]
    assert got == {i: i * 10 for i in range(6)}


@pytest.mark.anyio
async def test_a_higher_priority_takes_the_place_of_the_newest_lowest_when_the_queue_is_full() -> (
    None
):
    model = Model(hold=frozenset({0}))
    with anyio.fail_after(10), ModelExecutor("asr", fn=model.one, max_queue=3) as executor, model:
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()
            for request, priority in [(1, 0), (2, 1), (3, 0)]:
                tg.start_soon(collect_at, executor, request, priority, got)
            await wait_all_tasks_blocked()
            tg.start_soon(collect_at, executor, 4, 1, got)  # takes 3's place
            await wait_all_tasks_blocked()
            assert isinstance(got[3], Overloaded)
            tg.start_soon(collect_at, executor, 5, 2, got)  # takes 1's place
            await wait_all_tasks_blocked()
            assert isinstance(got[1], Overloaded)
            with pytest.raises(Overloaded):  # nothing waiting is below priority 1
                await executor.run(6, priority=1)
            model.release.set()
        assert model.ran == [0, 5, 2, 4]
        assert {k: v for k, v in got.items() if not isinstance(v, Overloaded)} == {
            0: 0,
            2: 20,
            4: 40,
            5: 50,
        }
        statistics = executor.statistics()
        assert (statistics.rejected, statistics.preempted) == (3, 2)


# -- queue wait --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_queue_wait_is_the_median_wait_of_one_priority_and_counts_those_still_waiting() -> (
    None
):
    model = Model(hold=frozenset({0}))
    with anyio.fail_after(10), ModelExecutor("asr", fn=model.one) as executor, model:
        assert executor.queue_wait(1, 10.0) == 0.0  # nothing run yet
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect_at, executor, 0, 1, got)  # taken at once: waits ~0
            await model.wait_entered()
            tg.start_soon(collect_at, executor, 1, 1, got)
            tg.start_soon(collect_at, executor, 2, 0, got)  # another priority: not counted
            await wait_all_tasks_blocked()
            queued = time.perf_counter()
            await wait_all_tasks_blocked()
            waiting = executor.queue_wait(1, 10.0)  # request 1's age so far, and request 0's ~0
            held = time.perf_counter() - queued
            model.release.set()
        # the median of two waits is their mean: request 1 has waited at least ``held``
        assert waiting >= held / 2
        after = executor.queue_wait(1, 10.0)
        assert after >= waiting  # request 1 was taken later than the reading: it waited longer
        assert executor.queue_wait(1, 0.0) == 0.0  # out of a window that has just begun
    assert model.ran == [0, 1, 2]
