"""How long the intent engine takes to decide once the final transcript arrives.

The receptionist agent (configs/receptionist.yaml) with the embedded all-MiniLM-L6-v2
(numpy, one OpenBLAS thread, on its executor thread). Each utterance is new to the embedding
cache (the real case: a caller's sentence has not been seen before), and each is decided in a
fresh conversation. Measured, as wall-clock milliseconds from ``handle(text, final=True)`` to
its decision:

``intent``
    an utterance between flows: embed it, score every intent, run the matched intent (its
    reply; a flow's first question). No webhook.
``intent after preview``
    the same utterances, after their partial transcripts (the words so far, a word at a time)
    went through ``handle(..., final=False)``: when an early decision was previewed, the final
    keeps its intent and only reads slots.
``slot answer``
    an answer inside a flow ("four", "tomorrow at 8"): slot parsing only, no embedding.

Baselines in the same run: one embedding alone through the executor (``embed``), and the
model's forward pass alone on this thread (``encode``). Run: ``python -m bench.intents``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import anyio

from agent.config import load_config
from agent.dialogue.embeddings import MiniLMEncoder, SentenceEmbedder, resolve_model_dir
from agent.dialogue.engine import IntentEngine, IntentSession

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "receptionist.yaml"
TODAY = dt.date(2025, 3, 5)

UTTERANCES = [
    "Hi, I'd like to book a table for four tomorrow at 8pm",
    "Could I reserve a table for two on Friday evening",
    "we'd love to come for dinner on saturday",
    "do you have any free tables tonight",
    "I want to make a booking for my family",
    "what are your opening hours on sunday",
    "when do you close tonight",
    "are you open on monday",
    "what time does the kitchen close",
    "where exactly is the restaurant",
    "how do I get to you from the station",
    "is there somewhere to park",
    "do you have vegan dishes",
    "what kind of food do you serve",
    "I have a nut allergy, is that a problem",
    "can I speak to a real person",
    "put me through to the manager please",
    "let me talk to someone at the front desk",
    "forget it, I changed my mind",
    "thanks a lot for your help",
    "ok that's everything, goodbye",
    "bye bye",
    "what's the weather like today",
    "do you sell gift cards",
    "my order never arrived",
    "can you recommend a wine",
    "I'd like a table by the window",
    "is it possible to bring a dog",
    "do you do birthday cakes",
    "how much is the tasting menu",
]
SUFFIXES = ["", " please", " thank you"]
ANSWERS = ["four", "six people", "tomorrow at 8", "half past seven", "on the terrace", "Smith"]


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90, ordered[-1]


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


async def decide(session: IntentSession, text: str) -> float:
    return await timed(partial(session.handle, text, final=True))


async def run(rounds: int) -> dict[str, list[float]]:
    config = load_config(CONFIG)
    results: dict[str, list[float]] = {
        "intent": [],
        "intent after preview": [],
        "slot answer": [],
        "embed": [],
        "encode": [],
    }
    previews = 0
    encoder = MiniLMEncoder(resolve_model_dir(config.profile.embeddings.model), threads=1)
    with SentenceEmbedder(config.profile.embeddings.model, threads=1) as embedder:
        async with await IntentEngine.load(config, embedder=embedder) as engine:
            await engine.conversation(today=TODAY).handle("warm up", final=True)
            for round_ in range(rounds):
                tag = f" {round_}" if round_ else ""
                for suffix in SUFFIXES:
                    for text in UTTERANCES:
                        fresh = f"{text}{suffix}{tag}"
                        session = engine.conversation(today=TODAY)
                        results["intent"].append(await decide(session, fresh))
                        # The same sentence, new to the cache again, after its partials.
                        again = f"so {fresh}"
                        session = engine.conversation(today=TODAY)
                        words = again.split()
                        for n in range(1, len(words)):
                            await session.handle(" ".join(words[:n]), final=False)
                        results["intent after preview"].append(await decide(session, again))
                        previews += session.reused_preview
                        unique = f"{fresh} embed"
                        results["embed"].append(await timed(partial(embedder.embed, unique)))
                        start = time.perf_counter()
                        encoder.encode([fresh])
                        results["encode"].append((time.perf_counter() - start) * 1000)
                for answer in ANSWERS:
                    session = engine.conversation(today=TODAY)
                    await session.handle("I'd like to book a table", final=True)
                    results["slot answer"].append(await decide(session, answer))
    print(f"previews kept by the final: {previews} of {len(results['intent after preview'])}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    results = anyio.run(run, args.rounds)
    print("| measurement | n | p50 (ms) | p90 (ms) | max (ms) |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        p50, p90, worst = percentiles(values)
        print(f"| {name} | {len(values)} | {p50:.2f} | {p90:.2f} | {worst:.2f} |")


if __name__ == "__main__":
    main()
