"""Soak: the most calls this machine holds, at real-time pace, for minutes, against a real server.

``--calls`` callers (6 by default: what the concurrency levels of bench/voice_to_voice.py
hold on 2 cores with room to spare) each place calls back to back until ``--minutes`` have
passed: the greeting, "Hello, good morning.", "What can you do?", each answer heard to its
end, then the caller hangs up and dials again (the callers of bench/voice_to_voice.py: a
``websockets`` client on ``/v1/stream`` streaming 20 ms frames at real-time pace, all the
time). Measured:

- **frames lost**: for every reply that ended (not interrupted), the 20 ms frames the server
  said it sent (``audio.end``'s ``samples``) that never arrived; must be 0;
- **late frames**: reply frames that arrived after their play time, for a client that starts
  playing at the first frame with no buffer of its own (the server sends 60 ms ahead);
- **turns answered**, and the ``error`` events callers got;
- **calls refused** with 1013 (``server.max_sessions``, or the admission by load:
  ``server.max_asr_wait_ms``; the caller dials again a second later), and the server's median
  final wait for the ASR (``voxline_asr_final_wait_seconds``) every 5 s;
- the server's **RSS** (``process_resident_memory_bytes``, every 5 s) at the start and the end,
  and its slope (a least-squares line, MB per minute), over the whole run and over its second
  half (a high-water mark levels off: its second half's slope falls towards 0; a leak's does
  not); with them its anonymous memory and threads (``/proc``: bench/soak_memory.py);
- its **open file descriptors** and **asyncio tasks** (``process_open_fds``,
  ``voxline_asyncio_tasks`` in ``/metrics``) before the calls (after one warm-up call: what
  is made once, on first use, is not a leak) and after them, once the server reports no
  session open: back to where they started.

Run: ``python -m bench.soak`` (10 minutes, 6 calls; ``--minutes 1`` is the test's version,
tests/test_soak.py; ``--json FILE``). ``--tracemalloc`` runs the server with its memory probe
(agent/memory_probe.py) and reports what grew between the end of the first minute (or the
warm-up, for a shorter run) and the end: Python allocation sites, object types, the Python
memory traced against the anonymous RSS, and what ``malloc_trim`` gives back (slower: the
server traces every allocation and stalls about a second at each probe; ``--probes DIR``
keeps the snapshots and readings there). The server inherits
this process's environment: ``MALLOC_ARENA_MAX=2 python -m bench.soak`` runs it with two glibc
arenas.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from agent.caller import FRAME_MS, Caller, CallRefused, Utterance, call
from agent.memory_probe import ENV as MEMORY_PROBE
from agent.server_process import running_server
from bench.soak_memory import Prober, anonymous, growth, print_growth, threads
from bench.utterances import utterance
from bench.v2v_capacity import with_max_sessions
from bench.v2v_report import Turn, load, realtime
from bench.voice_to_voice import CONCURRENT_SCRIPT, answer_to, finish, greeting

__all__ = ["ProcessState", "SoakResult", "report", "soak", "soak_config"]

#: seconds between two readings of the server's RSS
SAMPLE_S = 5.0
#: seconds a refused caller waits before dialling again (the server's Retry-After)
RETRY_AFTER_S = 1.0


def soak_config(path: str, folder: str, calls: int) -> Path:
    """A copy of the agent file at ``path`` that admits the soak's calls: twice ``calls``,
    since a caller dials again while its last call still winds down on the server (at the
    limit itself, that redial is refused with 1013, as admission should). The admission by
    load (``server.max_asr_wait_ms``) stays as the agent file has it: a machine that cannot
    hold ``calls`` refuses some (counted, ``refused``) rather than lose their turns."""
    return with_max_sessions(path, folder, 2 * calls, by_load=True)


@dataclass(frozen=True)
class ProcessState:
    """What the server's ``/metrics`` says of its process."""

    sessions: int
    fds: int
    tasks: int
    rss: int  # bytes
    errors: float  # voxline_errors_total, all series
    asr_wait: float  # voxline_asr_final_wait_seconds


@dataclass
class CallOutcome:
    turns: list[Turn]
    lost_frames: int
    late_frames: int
    frames: int
    worst_lateness_s: float
    errors: list[dict[str, Any]]
    worst_send_lag_s: float


@dataclass
class SoakResult:
    calls: int
    seconds: float
    placed: int = 0
    #: calls the server refused with 1013 (its limit, or its load): dialled again after
    #: :data:`RETRY_AFTER_S`
    refused: int = 0
    turns: int = 0
    answered: int = 0
    lost_frames: int = 0
    late_frames: int = 0
    frames: int = 0
    worst_lateness_ms: float = 0.0
    worst_send_lag_ms: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    server_errors: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (s since start, bytes)
    #: at the same times: the anonymous part of the RSS (bytes), and the threads
    anonymous: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    #: the server's median final wait for the ASR (seconds), at the same times
    asr_waits: list[float] = field(default_factory=list)
    before: ProcessState | None = None
    after: ProcessState | None = None
    #: with --tracemalloc: what grew (bench/soak_memory.py's growth reports)
    memory: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rss_slope_mb_per_min(self) -> float:
        return slope(self.rss)

    def summary(self) -> dict[str, Any]:
        first, last = (self.rss[0][1], self.rss[-1][1]) if self.rss else (0, 0)
        half = [(t, b) for t, b in self.rss if t >= self.seconds / 2]
        anonymous = list(zip([t for t, _ in self.rss], self.anonymous, strict=False))
        out = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("rss", "errors", "anonymous", "threads", "memory", "asr_waits")
        }
        out.update(
            rss_start_mb=round(first / 2**20, 1),
            rss_end_mb=round(last / 2**20, 1),
            rss_slope_mb_per_min=round(self.rss_slope_mb_per_min, 2),
            rss_slope_second_half_mb_per_min=round(slope(half), 2),
            anonymous_slope_mb_per_min=round(slope(anonymous), 2),
            rss_mb=[(round(t), round(rss / 2**20, 1)) for t, rss in self.rss],
            anonymous_mb=[round(b / 2**20, 1) for b in self.anonymous],
            threads=self.threads,
            asr_wait_ms=[round(wait * 1000) for wait in self.asr_waits],
            error_events=len(self.errors),
            error_codes=dict(error_codes(self.errors)),
            memory=self.memory,
        )
        return out


def error_codes(errors: Sequence[dict[str, Any]]) -> Counter[str]:
    """How many ``error`` events of each code (and the turn-taking rule behind a notice)."""
    return Counter(f"{e.get('code')} {e.get('rule', '')}".strip() for e in errors)


def slope(series: Sequence[tuple[float, int]]) -> float:
    """The least-squares slope of (seconds, bytes) readings, in MB per minute."""
    if len(series) < 2:
        return 0.0
    t, size = np.array([s for s, _ in series]), np.array([b for _, b in series])
    return float(np.polyfit(t / 60, size / 2**20, 1)[0])


async def process_state(client: httpx.AsyncClient, http: str) -> ProcessState:
    """The server's process as ``/metrics`` shows it now."""
    text = (await client.get(f"{http}/metrics", timeout=10)).text
    values: dict[str, float] = {}
    errors = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values.setdefault(sample.name, sample.value)
            if sample.name == "voxline_errors_total":
                errors += sample.value
    return ProcessState(
        sessions=int(values["voxline_sessions"]),
        fds=int(values["process_open_fds"]),
        tasks=int(values["voxline_asyncio_tasks"]),
        rss=int(values["process_resident_memory_bytes"]),
        errors=errors,
        asr_wait=values.get("voxline_asr_final_wait_seconds", 0.0),
    )


async def settled(
    client: httpx.AsyncClient, http: str, start: ProcessState | None, within: float
) -> ProcessState:
    """The server's state once no session is open and its file descriptors and tasks are back
    to ``start``'s (without ``start``: the same in two readings half a second apart), or as
    it is after ``within`` seconds. Another process's state: nothing to wait on but its
    answers."""
    previous, state = None, await process_state(client, http)

    def done() -> bool:
        wanted = start if start is not None else previous
        return not state.sessions and wanted is not None and _same(state, wanted)

    with anyio.move_on_after(within):
        while not done():
            await anyio.sleep(0.1 if start is not None else 0.5)
            previous, state = state, await process_state(client, http)
    return state


def _same(a: ProcessState, b: ProcessState) -> bool:
    return (a.fds, a.tasks) == (b.fds, b.tasks)


def lost_frames(caller: Caller) -> int:
    """20 ms frames of the replies that ended which the server sent and the caller lacks."""
    frame = caller.rate * FRAME_MS // 1000
    lost = 0
    for event in caller.events:
        if event["type"] != "audio.end" or event.get("interrupted"):
            continue
        reply = caller.replies.get(event["generation"])
        got = sum(samples for _, samples, _ in reply.frames) if reply is not None else 0
        lost += math.ceil(max(0, event["samples"] - got) / frame)
    return lost


async def one_call(url: str, script: Sequence[Utterance]) -> CallOutcome:
    """One call: the greeting, each line of ``script`` answered and heard, then hang up."""
    turns: list[Turn] = []
    async with call(url) as caller:
        await greeting(caller)
        for item in script:
            turn = await answer_to(caller, item)
            await finish(caller, turn)
            turns.append(turn)
    worst, late, frames, _ = realtime(list(caller.replies.values()))
    lag = max(caller.send_lag, default=0.0)
    return CallOutcome(turns, lost_frames(caller), late, frames, worst, caller.errors(), lag)


async def soak(
    url: str,
    http: str,
    calls: int,
    seconds: float,
    stagger: float = 1.0,
    *,
    pid: int | None = None,
    prober: Prober | None = None,
    probe_at: float = 60.0,
) -> SoakResult:
    """``calls`` callers placing calls back to back for ``seconds`` against the server at
    ``url`` (``ws://``) / ``http`` (its ``/metrics``); ``pid``: its process (for ``/proc``);
    ``prober``: its memory probe, read after the warm-up, at ``probe_at`` seconds (where the
    run lasts longer) and at the end."""
    script = [utterance(text) for text in CONCURRENT_SCRIPT]
    result = SoakResult(calls, seconds)
    limits = httpx.Limits(max_connections=1)  # one connection: the server's fds stay comparable
    async with httpx.AsyncClient(limits=limits) as client:
        await one_call(url, script[:1])  # the warm-up call
        result.before = await settled(client, http, None, 60)
        if prober is not None:
            await prober.take("warm-up", 0.0)
        began = time.perf_counter()
        deadline = began + seconds

        def sample(state: ProcessState) -> None:
            result.rss.append((time.perf_counter() - began, state.rss))
            result.asr_waits.append(state.asr_wait)
            result.anonymous.append(anonymous(pid) if pid is not None else 0)
            result.threads.append(threads(pid) if pid is not None else 0)

        def add(outcome: CallOutcome) -> None:
            result.placed += 1
            result.turns += len(outcome.turns)
            result.answered += sum(t.latency is not None for t in outcome.turns)
            result.lost_frames += outcome.lost_frames
            result.late_frames += outcome.late_frames
            result.frames += outcome.frames
            result.worst_lateness_ms = max(result.worst_lateness_ms, outcome.worst_lateness_s * 1e3)
            result.worst_send_lag_ms = max(result.worst_send_lag_ms, outcome.worst_send_lag_s * 1e3)
            result.errors += outcome.errors

        async def caller(index: int) -> None:
            await anyio.sleep(index * stagger)
            while time.perf_counter() < deadline:
                try:
                    add(await one_call(url, script))
                except CallRefused:
                    result.refused += 1
                    await anyio.sleep(RETRY_AFTER_S)

        async def sampler() -> None:
            while True:
                sample(await process_state(client, http))
                await anyio.sleep(SAMPLE_S)

        async def probe() -> None:
            assert prober is not None
            await anyio.sleep(probe_at)
            await prober.take(f"{probe_at:.0f} s", time.perf_counter() - began)

        async with anyio.create_task_group() as outer:
            outer.start_soon(sampler)
            if prober is not None and probe_at < seconds:
                outer.start_soon(probe)
            async with anyio.create_task_group() as callers:
                for index in range(calls):
                    callers.start_soon(caller, index)
            outer.cancel_scope.cancel()
        result.after = await settled(client, http, result.before, 60)
        sample(result.after)
        result.server_errors = result.after.errors - result.before.errors
        if prober is not None:
            await prober.take("the end", time.perf_counter() - began)
            last = len(prober.taken)
            result.memory = [growth(prober, i, last) for i in range(last - 1, 0, -1)]
    return result


def report(result: SoakResult) -> None:
    before, after = result.before, result.after
    assert before is not None
    assert after is not None
    print(
        f"\n{result.calls} callers for {result.seconds:.0f} s: {result.placed} calls "
        f"({result.refused} refused), "
        f"{result.answered}/{result.turns} turns answered, {result.lost_frames} frames lost, "
        f"{result.late_frames} late of {result.frames} (worst {result.worst_lateness_ms:.0f} ms), "
        f"{len(result.errors)} error events, {result.server_errors:.0f} server errors, "
        f"worst client send lag {result.worst_send_lag_ms:.0f} ms"
    )
    if result.errors:
        print(f"error events by code and rule: {dict(error_codes(result.errors))}")
    summary = result.summary()
    print(
        f"RSS {summary['rss_start_mb']} -> {summary['rss_end_mb']} MB "
        f"(slope {summary['rss_slope_mb_per_min']:+.2f} MB/min, second half "
        f"{summary['rss_slope_second_half_mb_per_min']:+.2f}; anonymous "
        f"{summary['anonymous_slope_mb_per_min']:+.2f}); open fds {before.fds} -> "
        f"{after.fds}; asyncio tasks {before.tasks} -> {after.tasks}; sessions {after.sessions}"
    )
    print(f"RSS every {SAMPLE_S:.0f} s (MB): {[mb for _, mb in summary['rss_mb']]}")
    print(f"median final wait for the ASR, every {SAMPLE_S:.0f} s (ms): {summary['asr_wait_ms']}")
    if result.threads:
        print(f"threads: {min(result.threads)} to {max(result.threads)}")
    for growth_report in result.memory:
        print_growth(growth_report)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    # glibc's tunables the server inherits (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, ...)
    malloc = {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")}
    print(f"{machine}, {time.strftime('%Y-%m-%d %H:%M')}, agent {args.config}, load {load()}")
    tracing = "on" if args.tracemalloc else "off"
    print(f"malloc: {malloc or 'glibc defaults'}; tracemalloc: {tracing}")
    for text in CONCURRENT_SCRIPT:
        utterance(text)  # espeak before the clock runs
    with tempfile.TemporaryDirectory(prefix="voxline-soak-") as folder:
        probes = Path(args.probes) if args.probes else Path(folder) / "probes"
        env = {MEMORY_PROBE: str(probes)} if args.tracemalloc else {}
        config = str(soak_config(args.config, folder, args.calls))
        with running_server(config, env=env) as server:
            pid = server.process.pid
            prober = Prober(pid, probes) if args.tracemalloc else None
            seconds = args.minutes * 60
            result = await soak(server.ws, server.http, args.calls, seconds, pid=pid, prober=prober)
    report(result)
    print(f"load average at the end: {load()}")
    return {
        "machine": machine,
        "malloc": malloc,
        "load_end": load(),
        **result.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=6, help="calls at once")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="probe the server's memory (agent/memory_probe.py) and report what grew",
    )
    parser.add_argument(
        "--probes",
        help="with --tracemalloc: keep the probes' snapshots and readings in this folder",
    )
    args = parser.parse_args()
    summary = anyio.run(run, args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(summary, out, indent=1, default=str)


if __name__ == "__main__":
    main()
