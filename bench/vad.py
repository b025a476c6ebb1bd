"""What Silero VAD costs per session: one session alone vs 50 sessions batched, on one core.

The process is pinned to one CPU and onnxruntime runs with one thread (intra- and inter-op).
The audio is real read speech (the ``moonshine-voice`` wheel's ``beckett.wav``, 16 kHz); each
session reads it from its own offset. Three measurements, each repeated ``--runs`` times
(the median is printed):

``single``
    one session, one frame per model call (``SileroVad.__call__``);
``batched``
    ``--sessions`` sessions, one model call per step with batch dimension N
    (``SileroVad.batch``);
``stages``
    1 and ``--sessions`` :class:`~pipeline.vad.stage.VadStage` instances in one event loop, fed
    20 ms frames through real channels as fast as they go, sharing one
    :func:`~pipeline.vad.silero.vad_executor` (its worker thread on the same core): the whole
    path, with the executor's natural batching (whatever is waiting runs as one call);
``paced``
    the same ``--sessions`` stages fed at real-time pace (``--paced-frames`` frames each),
    sessions at random phases: what a live server sees. Batches are smaller here, because only
    the frames that arrived while the worker was busy run together.

Cost is reported as milliseconds of CPU time (``time.process_time``) per 512-sample frame *per
session* and as a share of real time (a frame is 32 ms of audio). Run: ``python -m bench.vad``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import anyio
import numpy as np

from agent.caller_audio import read_speech
from pipeline.channels import Channel, Policy
from pipeline.events import AudioFrame, Pcm
from pipeline.executor import ModelExecutor
from pipeline.vad import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    SileroVad,
    VadRequest,
    VadResult,
    VadStage,
    vad_executor,
)

FRAME_MS = 1000 * FRAME_SAMPLES / SAMPLE_RATE


def speech() -> Pcm:
    samples, rate = read_speech("beckett")
    assert rate == SAMPLE_RATE
    return samples


def streams(sessions: int, frames: int) -> list[Pcm]:
    """``sessions`` streams of ``frames`` frames each, cut from the speech at different offsets."""
    audio = speech()
    needed = frames * FRAME_SAMPLES
    audio = np.tile(audio, needed // len(audio) + 2)
    step = 2357  # not a multiple of the frame size: sessions see different audio
    return [audio[i * step : i * step + needed] for i in range(sessions)]


def single(model: SileroVad, frames: int) -> float:
    """CPU seconds per frame for one session, one call per frame."""
    (stream,) = streams(1, frames)
    state = model.new_state()
    began = time.process_time()
    for i in range(frames):
        frame = stream[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
        state = model(VadRequest(frame=frame, state=state)).state
    return (time.process_time() - began) / frames


def batched(model: SileroVad, sessions: int, frames: int) -> float:
    """CPU seconds per session-frame with all sessions in one call per step."""
    audio = streams(sessions, frames)
    states = [model.new_state() for _ in range(sessions)]
    began = time.process_time()
    for i in range(frames):
        requests = [
            VadRequest(frame=s[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES], state=state)
            for s, state in zip(audio, states, strict=True)
        ]
        states = [result.state for result in model.batch(requests)]
    return (time.process_time() - began) / (frames * sessions)


def stages(
    model: SileroVad, sessions: int, frames: int, *, paced: bool = False
) -> tuple[float, float]:
    """CPU seconds per session-frame through VadStage + the shared executor; mean batch size.

    ``paced``: each session sends its 20 ms frames at real-time pace, sessions starting at
    random offsets within one frame (as calls do), instead of as fast as it can.
    """
    audio = streams(sessions, frames)
    chunk = SAMPLE_RATE // 50  # 20 ms frames, as transports send them
    phases = np.random.default_rng(0).uniform(0.0, 0.02, sessions)

    async def session(executor: ModelExecutor[VadRequest, VadResult], index: int) -> None:
        inbox = Channel("in", 8, Policy.BLOCK)
        outbox = Channel("out", 8, Policy.BLOCK)
        stage = VadStage(executor)

        async def produce() -> None:
            pcm = audio[index]
            start = anyio.current_time() + phases[index]
            for begin in range(0, len(pcm), chunk):
                if paced:
                    await anyio.sleep_until(start + begin / SAMPLE_RATE)
                await inbox.send(
                    AudioFrame(
                        session_id=str(index),
                        sample_rate=SAMPLE_RATE,
                        pcm=pcm[begin : begin + chunk].tobytes(),
                        pts=begin,
                    )
                )
            inbox.close()

        async def run() -> None:
            try:
                await stage(inbox, outbox)
            finally:
                outbox.close()

        async def drain() -> None:
            async for _ in outbox:
                pass

        async with anyio.create_task_group() as group:
            group.start_soon(produce)
            group.start_soon(run)
            group.start_soon(drain)

    with vad_executor(model) as executor:

        async def main() -> None:
            async with anyio.create_task_group() as group:
                for index in range(sessions):
                    group.start_soon(session, executor, index)

        began = time.process_time()
        anyio.run(main, backend_options={"use_uvloop": True})
        cpu = time.process_time() - began
        mean_batch = executor.statistics().mean_batch_size
    return cpu / (frames * sessions), mean_batch


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def report(label: str, seconds: float, values: list[float], note: str = "") -> None:
    ms = seconds * 1000
    spread = ", ".join(f"{v * 1000:.4f}" for v in values)
    print(
        f"{label:<28} {ms:8.4f} ms/frame/session  {100 * ms / FRAME_MS:6.3f} % of real time"
        f"  [runs: {spread}]{note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--frames", type=int, default=600, help="frames per session per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--paced-frames", type=int, default=300, help="0 to skip (wall time)")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: first)")
    args = parser.parse_args()

    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    model = SileroVad(intra_op_threads=1, inter_op_threads=1)
    print(
        f"silero VAD, onnxruntime 1 thread, pinned to CPU {cpu} of {os.cpu_count()}; "
        f"{platform.processor() or platform.machine()}; Python {platform.python_version()}"
    )
    print(f"{args.frames} frames of {FRAME_MS:.0f} ms per session, median of {args.runs} runs")
    single(model, 50)  # warm up
    batched(model, args.sessions, 10)

    value, values = median_of(args.runs, lambda: single(model, args.frames))
    report("single (1 session)", value, values)
    value, values = median_of(args.runs, lambda: batched(model, args.sessions, args.frames))
    report(f"batched ({args.sessions} per call)", value, values)
    for count in (1, args.sessions):
        batches: list[float] = []

        def through_stages(count: int = count, batches: list[float] = batches) -> float:
            seconds, mean_batch = stages(model, count, args.frames)
            batches.append(mean_batch)
            return seconds

        value, values = median_of(args.runs, through_stages)
        note = f"  mean batch {statistics.median(batches):.1f}"
        report(f"stages ({count} session{'s' * (count > 1)})", value, values, note)
    if args.paced_frames:
        batches = []

        def paced() -> float:
            seconds, mean_batch = stages(model, args.sessions, args.paced_frames, paced=True)
            batches.append(mean_batch)
            return seconds

        value, values = median_of(args.runs, paced)
        note = f"  mean batch {statistics.median(batches):.1f}"
        report(f"paced ({args.sessions} sessions)", value, values, note)


if __name__ == "__main__":
    main()
