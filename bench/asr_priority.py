"""Finals under load: one caller's final decode while other calls keep the executor busy.

One shared Whisper executor (the embedded base, int8, the default agent's threads and
options), as the server has. ``N`` background calls each keep one partial decode in flight at
all times (2 s of speech, as a caller mid-sentence: the ASR stage sends at most one job per
call at a time). One measured call sends a final (an utterance plus 0.75 s of silence, as the
stage does at the end of speech) every ``--gap`` seconds; the time from sending the final to
its result is what a caller waits for after the VAD decided they stopped.

Two modes, interleaved in one run so the machine's noise hits both alike:

``priority``
    the final at :data:`~pipeline.asr.stage.FINAL_PRIORITY`, partials at
    :data:`~pipeline.asr.stage.PARTIAL_PRIORITY` (what the ASR stage does);
``fifo`` (the baseline)
    everything at one priority: first come, first served (the executor before priorities).

And the floor: the same final decoded with nothing else queued.

Run: ``python -m bench.asr_priority`` (about 2 minutes on 2 cores; ``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import anyio
import numpy as np

from agent.caller_audio import espeak, silence
from agent.config import load_config
from agent.models import asr_model_config, asr_options
from pipeline.asr.decoder import Decoded, DecodeRequest
from pipeline.asr.stage import FINAL_PRIORITY, PARTIAL_PRIORITY, asr_executor
from pipeline.executor import ModelExecutor

FINAL_TEXT = "Please ask her to call me back this afternoon."
PARTIAL_TEXT = "I was wondering whether you could tell me"
Executor = ModelExecutor[DecodeRequest, Decoded]


def floats(pcm: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def partials_forever(executor: Executor, request: DecodeRequest) -> None:
    while True:
        await executor.run(request, priority=PARTIAL_PRIORITY)


async def timed(executor: Executor, request: DecodeRequest, priority: int) -> float:
    began = time.perf_counter()
    decoded = await executor.run(request, priority=priority)
    assert decoded.text, "the final decoded to nothing"
    return (time.perf_counter() - began) * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    options = asr_options(config)
    final = DecodeRequest(
        audio=floats(np.concatenate([espeak(FINAL_TEXT), silence(0.75)])),
        final=True,
        options=options,
    )
    mid_sentence = floats(espeak(PARTIAL_TEXT)[:32000])
    partial = DecodeRequest(audio=mid_sentence, final=False, options=options)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": asr_model_config(config).model,
        "loads": {},
    }
    with asr_executor(asr_model_config(config)) as executor:
        for _ in range(2):  # warm up
            await executor.run(final)
        floor = [await timed(executor, final, FINAL_PRIORITY) for _ in range(args.repeats)]
        report["floor_ms"] = {"p50": statistics.median(floor), "p95": percentile(floor, 0.95)}
        print(f"floor (nothing else queued): p50 {report['floor_ms']['p50']:.0f} ms")
        for calls in args.calls:
            waits: dict[str, list[float]] = {"priority": [], "fifo": []}
            async with anyio.create_task_group() as tg:
                for _ in range(calls):
                    tg.start_soon(partials_forever, executor, partial)
                await anyio.sleep(1.0)  # let the partials fill the queue
                for i in range(args.repeats * 2):
                    mode = "priority" if i % 2 == 0 else "fifo"
                    priority = FINAL_PRIORITY if mode == "priority" else PARTIAL_PRIORITY
                    waits[mode].append(await timed(executor, final, priority))
                    await anyio.sleep(args.gap)
                tg.cancel_scope.cancel()
            level: dict[str, Any] = {}
            for mode, values in waits.items():
                p50 = statistics.median(values)
                level[mode] = {
                    "p50": p50,
                    "p95": percentile(values, 0.95),
                    "x_floor": p50 / report["floor_ms"]["p50"],
                }
            level["fifo_over_priority"] = level["fifo"]["p50"] / level["priority"]["p50"]
            report["loads"][calls] = level
            print(
                f"{calls} other calls: final p50/p95 priority {level['priority']['p50']:.0f}/"
                f"{level['priority']['p95']:.0f} ms, fifo {level['fifo']['p50']:.0f}/"
                f"{level['fifo']['p95']:.0f} ms (fifo/priority {level['fifo_over_priority']:.2f}x)"
            )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument(
        "--calls",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 3, 6],
        help="background calls, each with one partial decode always in flight",
    )
    parser.add_argument("--repeats", type=int, default=10, help="finals per mode and level")
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between finals")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    report = anyio.run(run, args, backend_options={"use_uvloop": True})
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2, default=str)


if __name__ == "__main__":
    main()
