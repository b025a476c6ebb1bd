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


def test_audio_after_the_client_sent_nothing_for_a_while_starts_where_the_clock_is() -> None:
    # a client that sends nothing while the greeting plays: its first frame is not 4 s in the
    # past (turn-taking would end its turns the moment its speech stops)
    wall = FakeClock()
    clock = InputClock(wall, rate=1000)  # gaps over 0.5 s
    wall.advance(4.0)
    assert clock.advance(20) == 3980  # it ends now: the 3.98 s before it were silence
    assert clock.now() == 4000
    wall.advance(0.02)
    assert clock.advance(20) == 4000  # contiguous from there
    wall.advance(0.4)
    assert clock.advance(20) == 4020  # 0.38 s late: jitter, not a gap
    assert clock.now() == 4420
    assert clock.advance(380) == 4040  # the frames held up catch up
    assert clock.now() == 4420
    assert clock.wall_time_of(3990) == 4.0


def paced(clock: InputClock, wall: FakeClock, frames: int) -> list[int]:
    """``frames`` 20 ms frames at real-time pace (each 20 ms after the last): their positions."""
    positions = []
    for _ in range(frames):
        wall.advance(0.02)
        positions.append(clock.advance(20))
    return positions


def test_a_stalled_stream_keeps_its_positions_when_the_frames_held_up_come() -> None:
    # Twilio, SIP, WebRTC, or this server's own event loop held up for 0.8 s in the middle of
    # the caller's words: a gap in the positions would cut them in two
    wall = FakeClock()
    clock = InputClock(wall, rate=1000)
    before = paced(clock, wall, 50)
    wall.advance(0.8)
    held_up = [clock.advance(20) for _ in range(40)]  # back to back, as they were queued
    after = paced(clock, wall, 50)
    assert before + held_up + after == list(range(0, 2800, 20))  # contiguous
    assert clock.now() == 2800  # caught up: 2.8 s of audio in 2.8 s
