"""What the pipeline runtime costs: Voxline channels + SessionRuntime vs a plain-asyncio floor.

A source feeds K pass-through stages and a sink with 20 ms 16 kHz PCM16 frames. The floor is the
same shape written by hand: tasks joined by ``asyncio.Queue(maxsize=32)``. Voxline runs the
stages with :func:`pipeline.runtime.run_pipeline` joined by ``Channel(32, Policy.BLOCK)``.

Three measurements, each for K = 4 and 16, both implementations in the same run:

1. added latency with one frame in flight (p50/p99, and per stage);
2. burst throughput: frames/s and CPU seconds per 1000 frames;
3. M = 1, 10, 50 sessions at real-time pace: p50/p99 latency and CPU % of one core.

Every frame is checked to arrive in order. Run: ``python -m bench.pipeline_overhead``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
import uvloop

from pipeline.channels import Channel, Policy
from pipeline.events import AudioFrame
from pipeline.runtime import Link, run_pipeline

FRAME_SAMPLES = 320  # 20 ms at 16 kHz
PCM = b"\x01\x00" * FRAME_SAMPLES
CAPACITY = 32

# A chain takes frames through ``put`` and yields them to ``on_frame`` at the sink.
Put = Callable[[AudioFrame], Awaitable[None]]
OnFrame = Callable[[AudioFrame], None]
Chain = Callable[[int, "Harness"], Coroutine[Any, Any, None]]


def frame(session: int, index: int) -> AudioFrame:
    return AudioFrame(
        session_id=str(session), sample_rate=16000, pcm=PCM, pts=index * FRAME_SAMPLES
    )


@dataclass
class Harness:
    """What a chain needs: where its source reads from and what its sink calls."""

    frames: asyncio.Queue[AudioFrame | None]
    on_frame: OnFrame


async def asyncio_chain(stages: int, harness: Harness) -> None:
    """The floor: plain tasks and asyncio.Queue(maxsize=32)."""
    queues: list[asyncio.Queue[AudioFrame | None]] = [
        asyncio.Queue(maxsize=CAPACITY) for _ in range(stages + 1)
    ]

    async def source() -> None:
        while True:
            item = await harness.frames.get()
            await queues[0].put(item)
            if item is None:
                return

    async def passthrough(
        inbox: asyncio.Queue[AudioFrame | None], outbox: asyncio.Queue[AudioFrame | None]
    ) -> None:
        while True:
            item = await inbox.get()
            await outbox.put(item)
            if item is None:
                return

    async def sink() -> None:
        while (item := await queues[-1].get()) is not None:
            harness.on_frame(item)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(source())
        for index in range(stages):
            tg.create_task(passthrough(queues[index], queues[index + 1]))
        tg.create_task(sink())


async def voxline_chain(stages: int, harness: Harness) -> None:
    """Voxline: run_pipeline with Channel(32, BLOCK) links."""

    async def passthrough(inbox: Channel, outbox: Channel) -> None:
        async for event in inbox:
            await outbox.send(event)

    source = Channel("source", CAPACITY, Policy.BLOCK)
    sink = Channel("sink", CAPACITY, Policy.BLOCK)

    async def feed() -> None:
        while (item := await harness.frames.get()) is not None:
            await source.send(item)
        source.close()

    async def drain() -> None:
        async for event in sink:
            assert isinstance(event, AudioFrame)
            harness.on_frame(event)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(feed())
        tg.create_task(drain())
        await run_pipeline(
            "bench", [passthrough] * stages, source, sink, Link(CAPACITY, Policy.BLOCK)
        )


CHAINS: dict[str, Chain] = {"asyncio": asyncio_chain, "voxline": voxline_chain}


class OrderCheck:
    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def __call__(self, event: AudioFrame) -> None:
        expected = self.next.get(event.session_id, 0)
        if event.pts != expected:
            raise AssertionError(f"frame out of order: pts {event.pts}, expected {expected}")
        self.next[event.session_id] = expected + FRAME_SAMPLES


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def one_in_flight(chain: Chain, stages: int, count: int) -> list[float]:
    """Latency of single frames, each sent once the previous one has arrived."""
    arrived = asyncio.Event()
    order = OrderCheck()
    frames: asyncio.Queue[AudioFrame | None] = asyncio.Queue()

    def on_frame(event: AudioFrame) -> None:
        order(event)
        arrived.set()

    latencies: list[float] = []
    task = asyncio.create_task(chain(stages, Harness(frames, on_frame)))
    for index in range(count):
        arrived.clear()
        start = time.perf_counter()
        frames.put_nowait(frame(0, index))
        await arrived.wait()
        latencies.append(time.perf_counter() - start)
    frames.put_nowait(None)
    await task
    return latencies[count // 10 :]  # the first tenth warms up


async def burst(chain: Chain, stages: int, count: int) -> tuple[float, float]:
    """Push ``count`` frames as fast as they go; frames/s and CPU s per 1000 frames."""
    order = OrderCheck()
    frames: asyncio.Queue[AudioFrame | None] = asyncio.Queue()
    for index in range(count):
        frames.put_nowait(frame(0, index))
    frames.put_nowait(None)
    cpu, wall = time.process_time(), time.perf_counter()
    await chain(stages, Harness(frames, order))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert order.next["0"] == count * FRAME_SAMPLES, "frames lost"
    return count / wall, cpu / count * 1000


async def realtime(
    chain: Chain, stages: int, sessions: int, seconds: float
) -> tuple[list[float], float]:
    """``sessions`` chains, each fed one frame every 20 ms; latencies and CPU % of one core."""
    order = OrderCheck()
    sent: dict[tuple[str, int], float] = {}
    latencies: list[float] = []

    def on_frame(event: AudioFrame) -> None:
        order(event)
        latencies.append(time.perf_counter() - sent.pop((event.session_id, event.pts)))

    queues: list[asyncio.Queue[AudioFrame | None]] = [asyncio.Queue() for _ in range(sessions)]
    count = round(seconds / 0.02)

    async def pace(session: int) -> None:
        start = time.perf_counter() + session * 0.02 / sessions  # spread sessions over a frame
        for index in range(count):
            delay = start + index * 0.02 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event = frame(session, index)
            sent[(event.session_id, event.pts)] = time.perf_counter()
            queues[session].put_nowait(event)
        queues[session].put_nowait(None)

    cpu, wall = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for session in range(sessions):
            tg.create_task(chain(stages, Harness(queues[session], on_frame)))
            tg.create_task(pace(session))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert len(latencies) == sessions * count, "frames lost"
    return latencies, 100 * cpu / wall


async def fast_producer(policy: Policy | None) -> tuple[int, float, list[float]]:
    """A producer making a 20 ms frame every 20 us for a consumer taking 2 ms per item.

    Latency is from when the newest sample of an item was produced to when the consumer took
    it. Returns the max depth, the max seconds of audio queued, and the latencies.
    """
    seconds, produce_every, consume_cost = 2.0, 20e-6, 2e-3
    produce_task: asyncio.Task[None]
    produced: dict[int, float] = {}
    latencies: list[float] = []
    order = OrderCheck()
    unbounded: asyncio.Queue[AudioFrame | None] = asyncio.Queue()
    channel = Channel("c", CAPACITY, policy or Policy.BLOCK, max_coalesced_samples=16000)
    max_depth = max_samples = 0

    async def produce() -> None:
        start, index = time.perf_counter(), 0
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(int(elapsed / produce_every) - index):  # every frame now due
                event = frame(0, index)
                produced[event.end_pts] = time.perf_counter()
                if policy is None:
                    unbounded.put_nowait(event)
                else:
                    await channel.send(event)
                index += 1
            await asyncio.sleep(0)
        unbounded.put_nowait(None)
        channel.close()

    async def take() -> AudioFrame | None:
        nonlocal max_depth, max_samples
        if policy is None:
            depth, queued = unbounded.qsize(), unbounded.qsize() * FRAME_SAMPLES
            item = await unbounded.get()
        else:
            stats = channel.statistics()
            depth, queued = stats.depth, stats.queued_samples
            try:
                received = await channel.receive()
            except anyio.EndOfStream:
                return None
            assert isinstance(received, AudioFrame)
            item = received
        max_depth, max_samples = max(max_depth, depth), max(max_samples, queued)
        return item

    async def consume() -> None:
        while (event := await take()) is not None:
            if policy is None and produce_task.done():
                # The unbounded queue would take minutes to drain: stop, and count the age of
                # the oldest frame still queued as the latency it has reached.
                latencies.append(time.perf_counter() - produced[event.end_pts])
                return
            for start in range(event.pts, event.end_pts, FRAME_SAMPLES):
                order(AudioFrame(session_id="0", sample_rate=16000, pcm=PCM, pts=start))
            latencies.append(time.perf_counter() - produced[event.end_pts])
            busy_until = time.perf_counter() + consume_cost  # a stage burning CPU on the loop
            while time.perf_counter() < busy_until:
                pass
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as tg:
        produce_task = tg.create_task(produce())
        tg.create_task(consume())
    return max_depth, max_samples / 16000, latencies


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f}"


async def main(args: argparse.Namespace) -> None:
    print(
        f"# pipeline overhead on {platform.node()} ({platform.machine()}, "
        f"Python {platform.python_version()}, loop={args.loop})"
    )
    print("\n## 1. Added latency, one frame in flight (us)")
    print("| K | impl | p50 | p99 | p50 per stage | ratio p50 to floor |")
    print("|---|---|---|---|---|---|")
    for stages in args.stages:
        floor = 0.0
        for name, chain in CHAINS.items():
            lat = await one_in_flight(chain, stages, args.latency_frames)
            p50 = statistics.median(lat)
            floor = floor or p50
            print(
                f"| {stages} | {name} | {us(p50)} | {us(pct(lat, 99))} | "
                f"{us(p50 / stages)} | {p50 / floor:.2f} |"
            )

    print("\n## 2. Burst throughput")
    print("| K | impl | frames/s | CPU s per 1000 frames | ratio CPU to floor |")
    print("|---|---|---|---|---|")
    for stages in args.stages:
        floor = 0.0
        for name, chain in CHAINS.items():
            rate, cpu = await burst(chain, stages, args.burst_frames)
            floor = floor or cpu
            print(f"| {stages} | {name} | {rate:10.0f} | {cpu:.4f} | {cpu / floor:.2f} |")

    print(f"\n## 3. Sessions at real-time pace ({args.seconds:g} s)")
    print("| K | M | impl | p50 (us) | p99 (us) | CPU % of one core | ratio CPU to floor |")
    print("|---|---|---|---|---|---|---|")
    for stages in args.stages:
        for sessions in args.sessions:
            floor = 0.0
            for name, chain in CHAINS.items():
                lat, cpu = await realtime(chain, stages, sessions, args.seconds)
                floor = floor or cpu
                print(
                    f"| {stages} | {sessions} | {name} | {us(statistics.median(lat))} | "
                    f"{us(pct(lat, 99))} | {cpu:5.1f} | {cpu / floor:.2f} |"
                )
    print("\n## 4. A producer 100x faster than its consumer (2 s, consumer 2 ms per item)")
    print(
        "| queue | max depth (items) | max audio held (s) | p50 latency (ms) | max latency (ms) |"
    )
    print("|---|---|---|---|---|")
    for name, policy in (
        ("unbounded asyncio.Queue", None),
        ("Channel(32, BLOCK)", Policy.BLOCK),
        ("Channel(32, COALESCE)", Policy.COALESCE),
    ):
        depth, held, lat = await fast_producer(policy)
        print(
            f"| {name} | {depth} | {held:.2f} | "
            f"{statistics.median(lat) * 1e3:.1f} | {max(lat) * 1e3:.1f} |"
        )
    print("\nEvery frame arrived, in order, in every run (the unbounded queue is not drained).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latency-frames", type=int, default=5000)
    parser.add_argument("--burst-frames", type=int, default=20000)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    arguments = parser.parse_args()
    if arguments.loop == "uvloop":
        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
