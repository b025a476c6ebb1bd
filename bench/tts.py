"""How fast Piper speaks through Voxline's worker process, against Piper called in-process.

Twenty varied sentences (short answers, long ones, numbers, questions) are synthesized
``--rounds`` times each by two paths, alternating sentence by sentence so that machine noise
hits both alike:

``worker``
    :class:`voices.piper_engine.PiperEngine`: the request goes down the pipe to
    ``python -m voices.piper_worker``, which phonemizes, synthesizes sentence by sentence with
    word alignment, and streams chunks back; timed from ``synthesize`` to each chunk's arrival
    in the event loop.
``in-process``
    the baseline: ``PiperVoice.synthesize(text, SynthesisConfig())`` in this process, one
    chunk per sentence, no alignment; timed from the call to each chunk.

Both use one voice (the embedded ``en_US-joe-medium``) and ``--threads`` onnxruntime threads.
Reported per path: time to the first PCM chunk (p50/p95) and the real-time factor (synthesis
time over audio duration, summed over all requests). A third line, ``worker, first clause``,
feeds three-sentence replies through :class:`~voices.chunking.ClauseChunker` and times the
first chunk it yields (what a live reply waits for before its first audio). Two more time the
first clause of fixed replies (a greeting, an intent's reply) through
:class:`voices.cache.CachedEngine`: ``fixed reply, uncached`` on a miss (the worker speaks it)
and ``fixed reply, cached`` once it is kept (replayed from memory; the worker is not asked).

The in-process baseline imports ``piper`` into this benchmark process; the benchmark is a
development tool, not part of the Voxline package, which only runs Piper out of process.

Run: ``python -m bench.tts [--rounds 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing
from pathlib import Path

import anyio

from voices.cache import CachedEngine
from voices.chunking import ClauseChunker
from voices.engine import SpeechPlan, TTSEngine
from voices.piper_engine import PiperEngine

SENTENCES = [
    "Hello!",
    "Sure, I can help with that.",
    "Your table for four is booked at eight o'clock tonight.",
    "Could you tell me your account number, please?",
    "The total comes to 42 dollars and 50 cents.",
    "I'm sorry, I didn't catch that.",
    "Our office is open from nine to five, Monday through Friday.",
    "Is there anything else I can do for you today?",
    "Dr. Smith will see you on Tuesday, March 3rd, at 10:30 a.m.",
    "Yes.",
    "Please hold while I transfer you to the billing department.",
    "The weather tomorrow will be sunny with a high of 24 degrees.",
    "That order shipped yesterday and should arrive within two business days.",
    "Thank you for calling, and have a wonderful evening!",
    "Would you prefer a window seat or an aisle seat?",
    "Your verification code is 7 4 1 9.",
    "I've added two large pizzas and a salad to your order.",
    "Unfortunately, we are fully booked on Saturday night.",
    "Let me check that for you; it will only take a moment.",
    "Great, you're all set.",
]

REPLIES = [
    "Sure, I can book that for you. What time would you like? We open at noon.",
    "Thanks for waiting, I found your order. It shipped on Monday. It should arrive soon.",
    "Well, that depends on the plan you have. The basic plan includes ten gigabytes. "
    "The premium plan has no limit.",
]

#: fixed replies (an agent's greeting and intent replies): the cache pre-fills them
FIXED = [
    "Hello, thank you for calling Chez Voxline. How can I help you today?",
    "We are open every day from nine in the morning until late at night.",
    "For sales, press 1. For support, press 2. For the operator, press 0.",
]


#: the in-process baseline: text in, (samples, rate) per sentence out
Speak = Callable[[str], Iterator[tuple[int, int]]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Timings:
    """One path's first-chunk latencies, synthesis seconds and audio seconds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.first: list[float] = []
        self.busy = 0.0
        self.audio = 0.0

    def line(self) -> str:
        first = [1000 * s for s in self.first]
        rtf = f"{self.busy / self.audio:.3f}" if self.audio else "  -  "
        return (
            f"{self.name:<22} n={len(first):>3}  first chunk p50 {percentile(first, 50):6.1f} ms"
            f"  p95 {percentile(first, 95):6.1f} ms  RTF {rtf}"
        )


def baseline_voice(threads: int) -> Speak:
    """Plain Piper in this process: yields (samples, rate) per sentence chunk."""
    import onnxruntime
    from piper import PiperVoice, SynthesisConfig
    from piper.config import PiperConfig

    from voices.piper_worker import default_model

    model = default_model()
    with Path(f"{model}.json").open(encoding="utf-8") as file:
        config = PiperConfig.from_dict(json.load(file))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    voice = PiperVoice(session=session, config=config)
    syn_config = SynthesisConfig()

    def speak(text: str) -> Iterator[tuple[int, int]]:
        for chunk in voice.synthesize(text, syn_config):
            yield len(chunk.audio_int16_bytes) // 2, chunk.sample_rate

    list(speak("Hello, this warms the voice up."))
    return speak


def time_baseline(
    speak: Callable[[str], Iterator[tuple[int, int]]], text: str, path: Timings
) -> None:
    start = time.perf_counter()
    first: float | None = None
    for samples, rate in speak(text):
        if first is None:
            first = time.perf_counter() - start
        path.audio += samples / rate
    path.busy += time.perf_counter() - start
    assert first is not None
    path.first.append(first)


async def time_worker(engine: TTSEngine, text: str | SpeechPlan, path: Timings) -> None:
    start = time.perf_counter()
    first: float | None = None
    async with aclosing(engine.synthesize(text)) as chunks:
        async for chunk in chunks:
            if first is None:
                first = time.perf_counter() - start
            path.audio += chunk.duration
    path.busy += time.perf_counter() - start
    assert first is not None
    path.first.append(first)


async def time_first_clause(engine: PiperEngine, reply: str, path: Timings) -> None:
    """Feed the reply word by word (as an LLM would, instantly) and time the first chunk's audio."""
    chunker = ClauseChunker()
    first_text = None
    for word in reply.split(" "):
        chunks = chunker.feed(word + " ")
        if chunks:
            first_text = chunks[0].text
            break
    if first_text is None:
        first_text = chunker.flush()[0].text
    await time_worker(engine, first_text, path)


def first_clause(reply: str) -> str:
    chunker = ClauseChunker()
    return [*chunker.feed(reply), *chunker.flush()][0].text.strip()


async def time_fixed(engine: PiperEngine, uncached: Timings, cached: Timings) -> None:
    """Each fixed reply's first clause through a new cache: a miss, then a hit."""
    cache = CachedEngine(engine, max_bytes=64 << 20)
    for reply in FIXED:
        plan = SpeechPlan.from_text(first_clause(reply))
        await time_worker(cache, plan, uncached)
        await time_worker(cache, plan, cached)
    stats = cache.statistics()
    assert (stats.hits, stats.misses) == (len(FIXED), len(FIXED)), stats


async def main_async(args: argparse.Namespace) -> list[Timings]:
    worker, baseline, clause = (
        Timings("worker"),
        Timings("in-process"),
        Timings("worker, first clause"),
    )
    uncached, cached = Timings("fixed reply, uncached"), Timings("fixed reply, cached")
    speak = baseline_voice(args.threads)
    with PiperEngine(threads=args.threads) as engine:
        await time_worker(engine, "Warming up the pipe.", Timings("warm-up"))
        for _ in range(args.rounds):
            for text in SENTENCES:
                await time_worker(engine, text, worker)
                time_baseline(speak, text, baseline)
            for reply in REPLIES:
                await time_first_clause(engine, reply, clause)
            await time_fixed(engine, uncached, cached)
        print(f"worker statistics: {engine.statistics()}")
    return [worker, baseline, clause, uncached, cached]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}, python {platform.python_version()}, "
        f"threads={args.threads}, rounds={args.rounds}"
    )
    for path in anyio.run(main_async, args):
        print(path.line())


if __name__ == "__main__":
    main()
