"""Media clock arithmetic and the fake wall clock."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from pipeline.clock import FakeClock, InputClock, MediaClock, MonotonicClock


def test_the_media_clock_counts_samples_and_returns_chunk_timestamps() -> None:
    clock = MediaClock(16000)
    assert [clock.advance(320) for _ in range(3)] == [0, 320, 640]
    assert clock.samples == 960
    assert clock.seconds == pytest.approx(0.06)
    assert clock.to_samples(0.5) == 8000


def test_the_media_clock_never_goes_back() -> None:
    with pytest.raises(ValueError, match="back"):
        MediaClock(8000).advance(-1)


@pytest.mark.anyio
async def test_fake_sleepers_wake_in_deadline_order_only_when_advanced() -> None:
    clock = FakeClock()
    woke: list[float] = []

    async def sleeper(deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append(clock.now())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for deadline in (0.3, 0.1, 0.2):
                tg.start_soon(sleeper, deadline)
            await wait_all_tasks_blocked()
            assert woke == []
            clock.advance(0.15)
            await wait_all_tasks_blocked()
            assert woke == [0.15]
            clock.advance(1.0)
    assert woke == [0.15, 1.15, 1.15]


@pytest.mark.anyio
async def test_the_monotonic_clock_returns_at_once_for_a_past_deadline() -> None:
    clock = MonotonicClock()
    with anyio.fail_after(5):
        await clock.sleep_until(clock.now() - 1)


def test_the_input_clock_extrapolates_between_frames_and_never_goes_back() -> None:
    wall = FakeClock()
    clock = InputClock(wall, rate=1000)
    assert clock.advance(100) == 0
    assert clock.now() == 100
    wall.advance(0.05)  # 50 ms with no audio: time goes on
    assert clock.now() == 150
    assert clock.advance(20) == 100  # a late frame does not move time back
    assert clock.now() == 150
    assert clock.wall_time_of(110) == 0.05
