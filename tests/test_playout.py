"""Playout: the buffer's bookkeeping, real-time pacing on a fake clock, and barge-in."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from pipeline.clock import FakeClock
from pipeline.events import AudioFrame
from pipeline.playout import Heard, Playout, PlayoutBuffer, Word

# "hello there" spoken over 200 samples: "hello" in [0, 120), "there" in [120, 200)
WORDS = [Word(0, 5, 0, 120), Word(6, 11, 120, 200)]


def pcm(samples: int) -> bytes:
    return b"\x01\x00" * samples


def test_frames_come_out_in_order_generation_by_generation() -> None:
    buffer = PlayoutBuffer(1000)
    buffer.push(1, pcm(30))
    buffer.push(2, pcm(10))
    pulled = []
    while (item := buffer.pull(20)) is not None:
        pulled.append((item[0], len(item[1]) // 2))
    assert pulled == [(1, 20), (1, 10), (2, 10)]
    assert buffer.buffered_samples == 0


def test_a_finished_reply_is_reported_once_all_is_played() -> None:
    buffer = PlayoutBuffer(1000)
    buffer.push(1, pcm(200), WORDS)
    buffer.finish(1)
    buffer.pull(200)
    assert buffer.done() == []  # pulled is not played: the transport has not taken it yet
    buffer.played(1, 200)
    assert buffer.done() == [Heard(1, 200, 11, interrupted=False)]
    assert buffer.done() == []


@pytest.mark.parametrize(
    ("played", "heard"),
    [(0, 0), (119, 0), (120, 5), (199, 5), (200, 11)],
)
def test_clear_reports_whole_words_heard(played: int, heard: int) -> None:
    buffer = PlayoutBuffer(1000)
    buffer.push(1, pcm(200), WORDS)
    buffer.pull(played)
    buffer.played(1, played)
    [report] = buffer.clear()
    assert report == Heard(1, played, heard, interrupted=True)
    assert buffer.pull(10) is None
    assert not buffer.active(1)


def test_clearing_one_generation_keeps_the_others() -> None:
    buffer = PlayoutBuffer(1000)
    buffer.push(1, pcm(50))
    buffer.push(2, pcm(50))
    assert [r.generation for r in buffer.clear(1)] == [1]
    assert buffer.playing == 2
    assert buffer.buffered_samples == 50


def test_odd_byte_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        PlayoutBuffer(1000).push(1, b"\x00")


@pytest.mark.anyio
async def test_frames_are_paced_by_media_time() -> None:
    clock = FakeClock()
    sent: list[tuple[float, AudioFrame]] = []
    heard: list[Heard] = []

    async def send(frame: AudioFrame) -> None:
        sent.append((clock.now(), frame))

    async def on_heard(report: Heard) -> None:
        heard.append(report)

    playout = Playout("s", 1000, clock, frame_ms=20, lead=0.0, on_heard=on_heard)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(playout.run, send)
            await playout.write(1, pcm(200), WORDS)
            playout.finish(1)
            await wait_all_tasks_blocked()
            assert len(sent) == 1  # the first frame goes at once, the rest wait for time
            for _ in range(9):
                clock.advance(0.02)
                await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert [round(t, 3) for t, _ in sent] == [round(0.02 * i, 3) for i in range(10)]
    assert [f.pts for _, f in sent] == [20 * i for i in range(10)]
    assert heard == [Heard(1, 200, 11, interrupted=False)]


@pytest.mark.anyio
async def test_a_barge_in_stops_audio_before_the_next_frame() -> None:
    clock = FakeClock()
    sent: list[AudioFrame] = []

    async def send(frame: AudioFrame) -> None:
        sent.append(frame)

    playout = Playout("s", 1000, clock, frame_ms=20, lead=0.0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(playout.run, send)
            await playout.write(1, pcm(200), WORDS)
            for _ in range(6):
                await wait_all_tasks_blocked()
                clock.advance(0.02)
            await wait_all_tasks_blocked()
            # seven frames (140 samples) are out; the eighth is waiting for its time
            [report] = playout.clear()
            clock.advance(1.0)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert len(sent) == 7
    assert report == Heard(1, 140, 5, interrupted=True)


@pytest.mark.anyio
async def test_writers_wait_while_too_much_is_buffered() -> None:
    clock = FakeClock()
    playout = Playout("s", 1000, clock, max_ahead=0.1)
    written: list[int] = []

    async def writer() -> None:
        for index in range(3):
            await playout.write(1, pcm(100))
            written.append(index)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await wait_all_tasks_blocked()
            assert written == [0]  # 100 samples = max_ahead: the second write waits
            playout.clear()
            await wait_all_tasks_blocked()
            assert written == [0, 1]
            tg.cancel_scope.cancel()
