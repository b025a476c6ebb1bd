"""The first audio of each answer as the server gets it, for the floor of bench.voice_to_voice.

A call's replies go through the TTS cache (:mod:`voices.cache`): the agent's fixed replies were
synthesised at start-up, so their first chunk comes from memory; a reply made during the call (a
template filled in, a flow's branch) is synthesised. The floor of a turn counts the first chunk
the server really waits for, so it is measured the same way: a :class:`~voices.cache.CachedEngine`
over the agent's engine (:func:`agent.models.tts_engine`, not started), prefilled as the server
does (:func:`agent.tts_prefill.prefill`), asked for each answer's first plan as the call's
:class:`~agent.reply.Speaker` builds it (:func:`agent.tts_prefill.reply_plans`). An answer whose
first plan is one of the fixed replies' plans is timed through the cache, any other one through
the engine itself (a miss, as on its first use in a call). With ``profile.tts.cache_mb: 0``
every answer is timed through the engine.

``python -m bench.voice_to_voice --floor ROUNDS [--baseline-tree DIR]`` (:func:`floor_rounds`):
the scripted call ROUNDS times against that floor, with the client's view of where each turn's
time went; with ``--baseline-tree``, a server of another copy of the repository (the code
before a change) answers the same call in turn, in the same run, for a before/after on a noisy
machine.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from agent.caller import Caller, Utterance
from agent.config import AgentConfig, load_config
from agent.dialogue.decision import Say
from agent.models import MIB, reply_voice, tts_engine
from agent.server_process import running_server
from agent.tts_prefill import fixed_replies, prefill, reply_plans
from bench.v2v_report import Turn, load, report_call
from pipeline.events import PIPELINE_RATE
from pipeline.vad.silero import FRAME_SAMPLES
from pipeline.vad.stage import PAUSE_SAMPLES
from voices.cache import CachedEngine, plan_key
from voices.catalog import load_catalog
from voices.engine import SpeechPlan, TTSEngine

__all__ = ["FirstChunk", "as_served", "first_chunks", "floor_rounds", "tts_cache_counters"]

#: :func:`bench.voice_to_voice.scripted_call`: a call to a URL saying a script
ScriptedCall = Callable[[str, Sequence[Utterance]], Awaitable[tuple[list[Turn], Caller]]]
#: :func:`bench.voice_to_voice.decode_times`: seconds of each utterance's final decode
DecodeTimes = Callable[[AgentConfig, Sequence[Utterance]], list[float]]


async def first_chunk(engine: TTSEngine, plan: SpeechPlan, rounds: int) -> float:
    """Median seconds to the first chunk of ``plan`` from ``engine``, over ``rounds`` requests."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        async with aclosing(engine.synthesize(plan)) as chunks:
            async for _chunk in chunks:
                times.append(time.perf_counter() - start)
                break
    return statistics.median(times) if times else 0.0


@dataclass(frozen=True)
class FirstChunk:
    """Seconds to the first chunk of an answer's first plan: synthesised (``miss``) and
    replayed from the cache (``hit``); ``key``: the plan's cache key; ``fixed``: it is a fixed
    reply's plan, prefilled at start-up."""

    miss: float
    hit: float
    key: bytes
    fixed: bool


async def first_chunks(
    config: AgentConfig, replies: Sequence[str], rounds: int = 3
) -> dict[str, FirstChunk]:
    """:class:`FirstChunk` of each of ``replies`` (an answer's text), each time the median of
    ``rounds`` requests."""
    voice = reply_voice(config.voice, load_catalog().get(config.voice.name))
    size = config.profile.tts.cache_mb * MIB
    fixed = {plan_key(plan) for plan in await reply_plans(fixed_replies(config), voice)}
    out: dict[str, FirstChunk] = {}
    inner = tts_engine(config)
    with CachedEngine(inner, max_bytes=size) as cache:
        async with aclosing(inner.synthesize("Ready.")) as warm:  # as the server warms it
            async for _chunk in warm:
                pass
        if size:
            await prefill(cache, config, voice)
        for text in replies:
            plans = await reply_plans([Say(text=text)], voice) if text else []
            if not plans:
                continue
            plan = plans[0]
            key = plan_key(plan)
            miss = await first_chunk(inner, plan, rounds)
            async with aclosing(cache.synthesize(plan)) as chunks:  # kept, if not already
                async for _chunk in chunks:
                    pass
            hit = await first_chunk(cache, plan, rounds) if size else miss
            out[text] = FirstChunk(miss, hit, key, key in fixed)
    return out


def as_served(
    firsts: Mapping[str, FirstChunk], answers: Sequence[str], *, cache: bool = True
) -> tuple[list[float], list[bool]]:
    """The first chunk of each of ``answers``, as one server says them in this order, and
    whether it came from its cache: a fixed reply's plan comes from the cache, so does one
    said before on that server (a reply is kept on its first use), any other is synthesised
    (``cache`` off: all of them)."""
    said: set[bytes] = set()
    times: list[float] = []
    hits: list[bool] = []
    for text in answers:
        first = firsts.get(text)
        if first is None:
            times.append(0.0)
            hits.append(False)
            continue
        hit = cache and (first.fixed or first.key in said)
        said.add(first.key)
        times.append(first.hit if hit else first.miss)
        hits.append(hit)
    return times, hits


async def tts_cache_counters(http: str) -> dict[str, float]:
    """The server's ``voxline_tts_cache_{hits,misses}_total``, from ``/metrics``."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{http}/metrics", timeout=10)).text
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("voxline_tts_cache_hits_total", "voxline_tts_cache_misses_total")):
            series, value = line.rsplit(" ", 1)
            name = series.split("{")[0].removeprefix("voxline_tts_cache_").removesuffix("_total")
            counters[name] = counters.get(name, 0.0) + float(value)
    return counters


def tight_floors(
    config: AgentConfig, decodes: Sequence[float], firsts: Sequence[float]
) -> list[float]:
    """Each turn's floor with the speculative final, seconds: the VAD confirms the end of
    speech once whole model frames cover ``min_silence_ms`` of silence (10 frames of 32 ms for
    300 ms), and the final decode started when whole frames covered the pause (4 frames for
    100 ms: :data:`~pipeline.vad.stage.PAUSE_SAMPLES`), so only the part of the decode
    (``decodes``) left at the confirmation waits, then the first chunk (``firsts``)."""
    silence = round(config.profile.vad.min_silence_ms * PIPELINE_RATE / 1000)
    confirm = math.ceil(silence / FRAME_SAMPLES) * FRAME_SAMPLES / PIPELINE_RATE
    pause = math.ceil(PAUSE_SAMPLES / FRAME_SAMPLES) * FRAME_SAMPLES / PIPELINE_RATE
    return [
        confirm + max(0.0, decode - (confirm - pause)) + first
        for decode, first in zip(decodes, firsts, strict=True)
    ]


def tree_env(tree: str | None) -> dict[str, str] | None:
    """The environment that makes ``voxline serve`` run the source tree ``tree`` (a copy of
    this repository elsewhere) with this venv: its folder first on the path, the current
    directory not on it (``None``: this tree)."""
    return None if tree is None else {"PYTHONSAFEPATH": "1", "PYTHONPATH": tree}


def cpu_model() -> str:
    """The CPU's model name, as ``lscpu`` shows it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


async def floor_rounds(
    args: argparse.Namespace,
    script: Sequence[Utterance],
    scripted_call: ScriptedCall,
    decode_times: DecodeTimes,
) -> dict[str, Any]:
    """``--floor ROUNDS``: the scripted call ROUNDS times on a server of this tree and, with
    ``--baseline-tree DIR``, in turn with one of the tree in DIR (each first in turn, both
    running all along); then the baseline once (``decode_times`` of each utterance, and
    :func:`served_first_chunks` of each answer), and for each server the call's report over
    all its turns: voice to voice, its floor and the ratio, the server's and the client's
    breakdown."""
    config = load_config(args.config)
    trees: dict[str, str | None] = {"this tree": None}
    if args.baseline_tree:
        trees["baseline tree"] = args.baseline_tree
    timed: dict[str, list[Turn]] = {name: [] for name in trees}
    report: dict[str, Any] = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load": [load()]}
    print(f"{report['cpu']}, {report['cpus']} CPUs, agent {args.config}, load {load()}")
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(running_server(args.config, env=tree_env(tree)))
            for name, tree in trees.items()
        }
        order = list(servers)
        for index in range(args.floor):
            shift = index % len(order)  # each first in turn
            for name in order[shift:] + order[:shift]:
                turns, _ = await scripted_call(servers[name].ws, script)
                timed[name] += turns
                got = [round(1000 * t.latency) for t in turns if t.latency is not None]
                print(f"round {index + 1}, {name}: v2v {got} ms (load {load()})")
        report["tts_cache"] = {n: await tts_cache_counters(s.http) for n, s in servers.items()}
    report["load"].append(load())
    decodes = dict(
        zip(
            [item.text for item in script],
            await anyio.to_thread.run_sync(decode_times, config, script),
            strict=True,
        )
    )
    answers = sorted({t.reply.text for turns in timed.values() for t in turns if t.reply})
    firsts = await first_chunks(config, answers)
    report["load"].append(load())
    silence = config.profile.vad.min_silence_ms / 1000
    for name, turns in timed.items():
        print(f"\n## {name}: {len(turns)} turns of {args.floor} calls")
        asr = [decodes[t.text] for t in turns]
        said = [t.reply.text if t.reply else "" for t in turns]
        tts, hits = as_served(firsts, said, cache=config.profile.tts.cache_mb > 0)
        report[name] = report_call(turns, silence, asr, tts, hits, tight_floors(config, asr, tts))
    print(f"\nTTS cache of each server after its calls: {report['tts_cache']}")
    print(
        f"load average (1/5/15 min) at the start, after the calls, after the baseline: "
        f"{report['load']}"
    )
    return report
