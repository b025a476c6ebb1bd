"""Batched Whisper decodes: throughput at batch 1, 2, 4, 8 on this machine.

The embedded Whisper base with the default agent's settings (``configs/default.yaml``: int8,
its threads, beam and options), as the server loads it. The windows are what live calls send:
each of 8 espeak-ng sentences (1-3 s) as a partial (greedy, no word timings) and as a final
(the agent's beam, word timings), with 0.5 s of leading silence, in a 10 s window.

For each batch size ``b``, the same 16 windows are decoded in batches of ``b`` through
:meth:`WhisperDecoder.decode_batch` (finals with finals, partials with partials, as the
executor's batch key groups them), ``--rounds`` times; reported per batch size: the median
seconds per batch, windows per second, and the ratio to batch 1 in the same run.

Two contexts (Whisper's previous-text prompt; CTranslate2 generates in one call only prompts
of one length):

``same``
    every window with the same context (calls at the same point of one script);
``mixed``
    each window with a context of its own length (calls at different points): the encoder
    and the alignment are batched, the generation only among prompts of one length.

Also checked: every batched text equals the text decoded alone.

``load``: the shared executor (:func:`~pipeline.asr.stage.asr_executor`) at ``batch_size`` 1,
2 and 4 in turn, with ``--calls`` callers that each keep one partial in flight at all times (as
the ASR stage does for a caller mid-sentence), while ``--finals`` callers end a turn at the
same moment, ``--rounds-under-load`` times, 1 s apart: the time from sending each final to its
result (p50/p95), the partials decoded per second meanwhile, and the executor's mean batch.

Run: ``python -m bench.asr_batch`` (about 4 minutes on 2 cores; ``--json FILE``).
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
from pipeline.asr.decoder import Decoded, DecodeOptions, DecodeRequest, WhisperDecoder
from pipeline.asr.stage import FINAL_PRIORITY, PARTIAL_PRIORITY, asr_executor

SENTENCES = (
    "Hello, good morning.",
    "What can you do?",
    "I'd like to leave a message.",
    "It's Alice Smith.",
    "Please call me back tomorrow morning.",
    "Yes, please.",
    "Thank you.",
    "What time do you open tomorrow?",
)
CONTEXTS = (
    "Hello.",
    "Hello, good morning.",
    "Hello, good morning. What can you do?",
    "I'd like to leave a message. It's Alice Smith.",
    "Yes.",
    "Please call me back tomorrow morning. Yes, please.",
    "Thank you, that is all for today.",
    "Good afternoon. I would like to change my order, please.",
)
SIZES = (1, 2, 4, 8)


def windows(options: DecodeOptions, mixed: bool) -> list[DecodeRequest]:
    """The 16 requests: every sentence as a partial, then every one as a final."""
    out = []
    for final in (False, True):
        for i, text in enumerate(SENTENCES):
            pcm = np.concatenate([silence(0.5), espeak(text)])
            audio = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
            context = CONTEXTS[i] if mixed else CONTEXTS[2]
            out.append(DecodeRequest(audio=audio, final=final, options=options, context=context))
    return out


def texts(results: list[Decoded | Exception]) -> list[str]:
    return [r.text if isinstance(r, Decoded) else repr(r) for r in results]


def measure(decoder: WhisperDecoder, requests: list[DecodeRequest], rounds: int) -> dict[str, Any]:
    alone = texts([decoder.decode(r) for r in requests])
    rows: dict[str, Any] = {}
    for size in SIZES:
        times: list[float] = []
        same = True
        for _ in range(rounds + 1):  # the first round warms this batch shape
            for start in range(0, len(requests), size):
                chunk = requests[start : start + size]
                began = time.perf_counter()
                got = texts(decoder.decode_batch(chunk))
                times.append(time.perf_counter() - began)
                same = same and got == alone[start : start + size]
        per_round = len(requests) // size
        kept = times[per_round:]  # warm-up round left out
        rows[str(size)] = {
            "seconds_per_batch": statistics.median(kept),
            "windows_per_second": size / statistics.median(kept),
            "same_text_as_alone": same,
        }
    base = rows["1"]["windows_per_second"]
    for row in rows.values():
        row["ratio"] = row["windows_per_second"] / base
    return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def under_load(
    decoder: WhisperDecoder, requests: list[DecodeRequest], size: int, args: argparse.Namespace
) -> dict[str, Any]:
    partials = [r for r in requests if not r.final]
    finals = [r for r in requests if r.final]
    done = 0

    async def keep_busy(request: DecodeRequest) -> None:
        nonlocal done
        while True:
            await executor.run(request, priority=PARTIAL_PRIORITY)
            done += 1

    latencies: list[float] = []

    async def final(request: DecodeRequest) -> None:
        began = time.perf_counter()
        await executor.run(request, priority=FINAL_PRIORITY)
        latencies.append(time.perf_counter() - began)

    with asr_executor(decoder, batch_size=size) as executor:
        async with anyio.create_task_group() as tg:
            for i in range(args.calls):
                tg.start_soon(keep_busy, partials[i % len(partials)])
            await anyio.sleep(2.0)  # the callers' partials fill the executor
            began, before = time.perf_counter(), done
            for round_ in range(args.rounds_under_load):
                async with anyio.create_task_group() as turn:
                    for i in range(args.finals):
                        turn.start_soon(final, finals[(round_ + i) % len(finals)])
                await anyio.sleep(1.0)
            rate = (done - before) / (time.perf_counter() - began)
            tg.cancel_scope.cancel()
        stats = executor.statistics()
    return {
        "final_p50_ms": 1000 * percentile(latencies, 0.5),
        "final_p95_ms": 1000 * percentile(latencies, 0.95),
        "partials_per_second": rate,
        "mean_batch": stats.mean_batch_size,
        "batch_sizes": stats.batch_sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=6, help="callers keeping a partial in flight")
    parser.add_argument("--finals", type=int, default=2, help="callers ending a turn at once")
    parser.add_argument("--rounds-under-load", type=int, default=10)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    config = load_config(args.config)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"{machine}, {time.strftime('%Y-%m-%d %H:%M')}, agent {args.config}")
    decoder = WhisperDecoder.load(asr_model_config(config))
    options = asr_options(config)
    report: dict[str, Any] = {"machine": machine, "load_average": os.getloadavg()}
    for name in ("same", "mixed"):
        rows = measure(decoder, windows(options, name == "mixed"), args.rounds)
        report[name] = rows
        print(f"\ncontext {name}:\n")
        print("| batch | s per batch (median) | windows/s | ratio to 1 | same text as alone |")
        print("|---|---|---|---|---|")
        for size, row in rows.items():
            print(
                f"| {size} | {row['seconds_per_batch']:.3f} | {row['windows_per_second']:.2f} | "
                f"{row['ratio']:.2f} | {'yes' if row['same_text_as_alone'] else 'no'} |"
            )
    mixed = windows(options, True)
    report["load"] = {}
    print(f"\nunder load: {args.calls} callers' partials, {args.finals} finals at once:\n")
    print("| batch_size | final p50 | final p95 | partials/s | mean batch |")
    print("|---|---|---|---|---|")
    for batch_size in (1, 2, 4):
        row = anyio.run(under_load, decoder, mixed, batch_size, args)
        report["load"][str(batch_size)] = row
        print(
            f"| {batch_size} | {row['final_p50_ms']:.0f} ms | {row['final_p95_ms']:.0f} ms | "
            f"{row['partials_per_second']:.2f} | {row['mean_batch']:.2f} |"
        )
    print(f"\nload average at the end: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
