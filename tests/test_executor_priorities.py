"""ModelExecutor priorities: the order waiting requests run in, and who a full queue refuses.

Steered as in tests/test_executor.py: the worker is held inside one request while callers queue.
"""

from __future__ import annotations

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
