"""ModelExecutor and ExecutorRegistry: results, batching, admission, cancellation, errors, close
(priorities: tests/test_executor_priorities.py).

The worker is steered with :class:`threading.Event` gates inside the fake model: the test holds
the worker inside one request, queues callers (``wait_all_tasks_blocked`` says when they are all
waiting), acts, then releases it. Nothing sleeps.
"""

from __future__ import annotations

import threading

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import ExecutorClosed, ModelError, Overloaded
from pipeline.executor import ExecutorRegistry, ModelExecutor
from tests.executor_support import Model, collect, worker_threads

# -- results -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_each_caller_gets_its_own_result() -> None:
    model = Model()
    with anyio.fail_after(10), ModelExecutor("m", fn=model.one) as executor:
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(collect, executor, i, got)
    assert got == {i: i * 10 for i in range(20)}


@pytest.mark.anyio
async def test_init_and_the_model_run_on_the_one_worker_thread() -> None:
    model = Model()
    init_threads: list[int] = []

    def init() -> None:
        init_threads.append(threading.get_ident())

    with anyio.fail_after(10), ModelExecutor("m", fn=model.one, init=init) as executor:
        assert init_threads  # start() waited for init
        assert await executor.run(1) == 10
        assert await executor.run(2) == 20
    assert model.threads == set(init_threads)
    assert threading.get_ident() not in model.threads


def test_a_failing_init_makes_start_raise_model_error() -> None:
    def init() -> None:
        raise OSError("no such model file")

    executor = ModelExecutor[int, int]("broken", fn=int, init=init)
    with pytest.raises(ModelError, match="'broken' failed to load") as info:
        executor.start()
    assert isinstance(info.value.__cause__, OSError)
    assert not worker_threads("broken")
    assert not executor.statistics().running


# -- batching ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_batch_fn_gets_the_requests_queued_while_the_worker_was_busy() -> None:
    model = Model(hold=frozenset({0}))
    with (
        anyio.fail_after(10),
        ModelExecutor("m", batch_fn=model.batch, max_batch=8) as executor,
        model,
    ):
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()
            for i in range(1, 6):
                tg.start_soon(collect, executor, i, got)
            await wait_all_tasks_blocked()
            model.release.set()
    assert model.batches == [[0], [1, 2, 3, 4, 5]]
    assert got == {i: i * 10 for i in range(6)}


@pytest.mark.anyio
async def test_a_batch_holds_at_most_max_batch_requests() -> None:
    model = Model(hold=frozenset({0}))
    with (
        anyio.fail_after(10),
        ModelExecutor("m", batch_fn=model.batch, max_batch=3) as executor,
        model,
    ):
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()
            for i in range(1, 6):
                tg.start_soon(collect, executor, i, got)
            await wait_all_tasks_blocked()
            model.release.set()
    assert model.batches == [[0], [1, 2, 3], [4, 5]]
    assert got == {i: i * 10 for i in range(6)}


# -- admission control -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_full_queue_refuses_new_work_with_overloaded() -> None:
    model = Model(hold=frozenset({0}))
    with anyio.fail_after(10), ModelExecutor("asr", fn=model.one, max_queue=2) as executor, model:
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()  # 0 runs: the queue is empty again
            tg.start_soon(collect, executor, 1, got)
            tg.start_soon(collect, executor, 2, got)
            await wait_all_tasks_blocked()
            with pytest.raises(Overloaded) as info:
                await executor.run(3)
            assert str(info.value) == (
                "executor 'asr' on cpu is overloaded: 2 requests queued (limit 2)"
            )
            assert (info.value.depth, info.value.limit) == (2, 2)
            model.release.set()
        assert got == {0: 0, 1: 10, 2: 20}
        assert executor.statistics().rejected == 1
        assert 3 not in model.ran


# -- cancellation ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_caller_cancelled_while_waiting_removes_its_request() -> None:
    model = Model(hold=frozenset({0}))
    with anyio.fail_after(10), ModelExecutor("m", fn=model.one) as executor, model:
        got: dict[int, object] = {}
        scope = anyio.CancelScope()

        async def cancellable() -> None:
            with scope:
                await collect(executor, 2, got)

        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()
            tg.start_soon(collect, executor, 1, got)
            tg.start_soon(cancellable)
            tg.start_soon(collect, executor, 3, got)
            await wait_all_tasks_blocked()
            assert executor.statistics().queue_depth == 3
            scope.cancel()
            await wait_all_tasks_blocked()
            assert executor.statistics().queue_depth == 2
            model.release.set()
        stats = executor.statistics()
    assert scope.cancelled_caught
    assert got == {0: 0, 1: 10, 3: 30}
    assert model.ran == [0, 1, 3]
    assert (stats.cancelled, stats.discarded, stats.requests_done) == (1, 0, 3)


@pytest.mark.anyio
async def test_a_caller_cancelled_while_running_gets_nothing_and_others_are_unaffected() -> None:
    model = Model(hold=frozenset({0}))
    with anyio.fail_after(10), ModelExecutor("m", fn=model.one) as executor, model:
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as running:
                running.start_soon(collect, executor, 0, got)
                await model.wait_entered()
                running.cancel_scope.cancel()
            tg.start_soon(collect, executor, 1, got)
            await wait_all_tasks_blocked()
            model.release.set()
        stats = executor.statistics()
    assert got == {1: 10}
    assert model.ran == [0, 1]
    assert (stats.cancelled, stats.discarded, stats.requests_done) == (1, 1, 2)


@pytest.mark.anyio
@settings(
    max_examples=40,
    deadline=None,
    # the executor is made inside each example; the fixtures only choose the event loop
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    # drawn up front, not with st.data() in the body: an overrun there leaves anyio's runner task
    # with an unretrieved StopTest, logged at GC time from whichever thread (and on 3.11.7 that
    # log's ast.parse can race pytest's assertion rewriting: "AST ... recursion depth mismatch")
    callers=st.integers(1, 12).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))
    ),
    max_batch=st.integers(1, 4),
    cancel_running=st.booleans(),
    cancel_after_release=st.booleans(),
)
async def test_every_caller_not_cancelled_gets_exactly_its_own_result(
    callers: tuple[int, set[int]],
    max_batch: int,
    cancel_running: bool,
    cancel_after_release: bool,
) -> None:
    n, cancelled = callers
    model = Model(hold=frozenset({-1}))
    with (
        anyio.fail_after(10),
        ModelExecutor("m", batch_fn=model.batch, max_batch=max_batch, max_queue=n) as executor,
        model,
    ):
        got: dict[int, object] = {}
        scopes = {i: anyio.CancelScope() for i in [-1, *range(n)]}

        async def caller(i: int) -> None:
            with scopes[i]:
                await collect(executor, i, got)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, -1)  # holds the worker
            await model.wait_entered()
            for i in range(n):
                tg.start_soon(caller, i)
            await wait_all_tasks_blocked()
            if cancel_running:
                scopes[-1].cancel()
            if not cancel_after_release:
                for i in cancelled:
                    scopes[i].cancel()
            await wait_all_tasks_blocked()  # the cancelled callers have taken their leave
            model.release.set()
            if cancel_after_release:  # races the worker: removed, discarded, or too late
                for i in cancelled:
                    scopes[i].cancel()
    stats = executor.statistics()  # after close(): the worker has finished everything it took

    for i in range(n):
        if i not in cancelled:
            assert got[i] == i * 10
        else:
            assert got.get(i, i * 10) == i * 10
    ran = model.ran
    assert sorted(ran) == sorted(set(ran))  # nothing ran twice
    caught = sum(scope.cancelled_caught for scope in scopes.values())
    assert stats.cancelled == caught
    assert stats.requests_done == len(ran)
    assert set(got) <= set(ran)
    if not cancel_after_release:
        assert set(ran) == {-1} | (set(range(n)) - cancelled)
        assert caught == len(cancelled) + cancel_running
        assert stats.discarded == cancel_running


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_exception_in_fn_reaches_its_caller_as_model_error_and_the_worker_survives() -> (
    None
):
    def fn(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x * 10

    with anyio.fail_after(10), ModelExecutor("m", fn=fn) as executor:
        with pytest.raises(ModelError, match="model 'm' failed") as info:
            await executor.run(-1)
        assert isinstance(info.value.__cause__, ValueError)
        assert await executor.run(2) == 20
        stats = executor.statistics()
    assert (stats.requests_failed, stats.requests_done) == (1, 1)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("raise", "model 'm' failed on a batch of 2"),
        ("short", "batch_fn of 'm' returned 1 results for 2 requests"),
    ],
)
@pytest.mark.anyio
async def test_a_failing_batch_fails_every_caller_in_it_and_only_them(
    fault: str, message: str
) -> None:
    model = Model(hold=frozenset({0}))

    def batch_fn(requests: list[int]) -> list[int]:
        results = model.batch(requests)
        if len(requests) == 2 and fault == "raise":
            raise RuntimeError("out of memory")
        return results[:1] if len(requests) == 2 else results

    with (
        anyio.fail_after(10),
        ModelExecutor("m", batch_fn=batch_fn, max_batch=2) as executor,
        model,
    ):
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()
            tg.start_soon(collect, executor, 1, got)
            tg.start_soon(collect, executor, 2, got)
            await wait_all_tasks_blocked()
            model.release.set()
        assert await executor.run(3) == 30
        stats = executor.statistics()
    assert model.batches == [[0], [1, 2], [3]]
    assert got[0] == 0
    errors = [got[1], got[2]]
    assert all(isinstance(error, ModelError) for error in errors)
    assert [str(error) for error in errors] == [message, message]
    assert errors[0] is not errors[1]
    if fault == "raise":
        causes = [error.__cause__ for error in errors if isinstance(error, ModelError)]
        assert isinstance(causes[0], RuntimeError)
        assert causes[0] is causes[1]
    else:
        assert all(error.__cause__ is None for error in errors if isinstance(error, ModelError))
    assert (stats.requests_failed, stats.requests_done) == (2, 2)


# -- closing -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_close_fails_waiting_callers_finishes_the_running_one_and_joins_the_thread() -> None:
    model = Model(hold=frozenset({0}))
    executor = ModelExecutor("closing", fn=model.one)
    executor.start()
    with anyio.fail_after(10), model:
        got: dict[int, object] = {}
        failed = anyio.Event()

        async def waiting(i: int) -> None:
            await collect(executor, i, got)
            if all(isinstance(got.get(j), ExecutorClosed) for j in (1, 2)):
                failed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()
            tg.start_soon(waiting, 1)
            tg.start_soon(waiting, 2)
            await wait_all_tasks_blocked()
            tg.start_soon(anyio.to_thread.run_sync, executor.close)  # waits for 0 to finish
            await failed.wait()
            with pytest.raises(ExecutorClosed, match="'closing' on cpu is closed"):
                await executor.run(3)
            model.release.set()
    assert got[0] == 0
    assert model.ran == [0]
    assert not worker_threads("closing")
    assert not executor.statistics().running
    executor.close()  # idempotent


@pytest.mark.anyio
async def test_run_before_start_is_a_programming_error() -> None:
    executor = ModelExecutor[int, int]("m", fn=int)
    with anyio.fail_after(10), pytest.raises(RuntimeError, match="not started"):
        await executor.run(1)
    executor.start()
    with pytest.raises(RuntimeError, match="already started"):
        executor.start()
    executor.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"fn": int, "batch_fn": list},
        {"fn": int, "max_batch": 2},
        {"batch_fn": list, "max_batch": 0},
        {"fn": int, "max_queue": 0},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"fn|max_"):
        ModelExecutor("m", **kwargs)  # type: ignore[arg-type]


# -- statistics --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_statistics_report_the_queue_the_batches_and_busy_time() -> None:
    model = Model(hold=frozenset({0}))
    executor = ModelExecutor("vad", batch_fn=model.batch, max_batch=4, max_queue=8)
    assert executor.statistics().busy_fraction == 0.0
    with anyio.fail_after(10), executor, model:
        got: dict[int, object] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, executor, 0, got)
            await model.wait_entered()
            for i in range(1, 6):
                tg.start_soon(collect, executor, i, got)
            await wait_all_tasks_blocked()
            held = executor.statistics()
            model.release.set()
        done = executor.statistics()
    closed = executor.statistics()

    assert (held.name, held.device, held.running) == ("vad", "cpu", True)
    assert (held.queue_depth, held.max_queue, held.in_flight) == (5, 8, 1)
    assert (held.batches, held.requests_done) == (0, 0)
    assert 0.0 < held.busy_fraction <= 1.0  # counts the batch still running

    assert model.batches == [[0], [1, 2, 3, 4], [5]]
    assert (done.queue_depth, done.in_flight, done.requests_done) == (0, 0, 6)
    assert (done.batches, done.batch_sizes) == (3, (2, 0, 0, 1))
    assert (done.mean_batch_size, done.largest_batch) == (2.0, 4)
    assert (done.requests_failed, done.rejected, done.cancelled, done.discarded) == (0, 0, 0, 0)
    assert 0.0 < done.busy_fraction <= 1.0

    assert not closed.running


# -- registry ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_registry_keeps_one_started_executor_per_model_and_device() -> None:
    registry = ExecutorRegistry()
    built: list[tuple[str, str]] = []

    def factory(model: str, device: str) -> ModelExecutor[int, int]:
        built.append((model, device))
        return ModelExecutor(model, fn=lambda x: x + 1, device=device)

    with anyio.fail_after(10):
        vad = registry.get_or_create("vad", "cpu", lambda: factory("vad", "cpu"))
        assert registry.get_or_create("vad", "cpu", lambda: factory("vad", "cpu")) is vad
        vad_gpu = registry.get_or_create("vad", "cuda:0", lambda: factory("vad", "cuda:0"))
        asr = registry.get_or_create("asr", "cpu", lambda: factory("asr", "cpu"))
        assert len({id(vad), id(vad_gpu), id(asr)}) == 3
        assert built == [("vad", "cpu"), ("vad", "cuda:0"), ("asr", "cpu")]
        assert await vad.run(1) == 2  # started by the registry
        assert [s.name for s in registry.statistics()] == ["vad", "vad", "asr"]

        with pytest.raises(ValueError, match=r"built \('asr', 'cpu'\)"):
            registry.get_or_create("tts", "cpu", lambda: factory("asr", "cpu"))

        registry.close_all()
        assert not any(s.running for s in (vad.statistics(), vad_gpu.statistics()))
        with pytest.raises(ExecutorClosed):
            await asr.run(1)
        assert registry.statistics() == []
        again = registry.get_or_create("vad", "cpu", lambda: factory("vad", "cpu"))
        assert again is not vad
        registry.close_all()


def test_the_registry_does_not_keep_an_executor_that_failed_to_start() -> None:
    registry = ExecutorRegistry()

    def broken() -> ModelExecutor[int, int]:
        def init() -> None:
            raise OSError("missing weights")

        return ModelExecutor("asr", fn=int, init=init)

    with pytest.raises(ModelError):
        registry.get_or_create("asr", "cpu", broken)
    assert registry.statistics() == []
