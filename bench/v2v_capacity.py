"""Capacity: how many concurrent calls a server holds in real time, for bench.voice_to_voice.

``python -m bench.voice_to_voice --asr-batch-sizes 1,4 [--baseline-tree DIR]``
(:func:`asr_batch_levels`): the ``--calls`` levels on one server per
``profile.asr.batch_size`` (a copy of the agent file, :func:`with_asr_batch_size`) and, with
``--baseline-tree``, on one server of the tree in DIR (another copy of the repository, the code
before a change, run with this venv: :func:`bench.v2v_floor.tree_env`), all running, the levels
interleaved (N on each, then the next N), so the trees are compared in the same run on a noisy
machine. The baseline tree's schema may not know ``profile.asr.batch_size`` nor
``server.max_asr_wait_ms`` (unknown keys are an error), so its copy of the agent file only
raises ``server.max_sessions``
(:func:`with_max_sessions`). A level holds when every turn was answered with no error and the
v2v p95 stayed under :data:`P95_TARGET_MS` (late frames are reported, not counted: on a shared
2-core machine the client's own stalls make some); a server stops at its first level that does
not hold. Its capacity is the most calls it held.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped]  # no stubs installed: used as Any

from agent.config import load_config
from agent.server_process import RunningServer, running_server
from bench.v2v_floor import tree_env
from bench.v2v_report import CallResult, level_summary, load, report_levels

__all__ = [
    "BASELINE",
    "P95_TARGET_MS",
    "asr_batch_levels",
    "executor_counters",
    "holds_p95",
    "measure_level",
    "most_sessions",
    "server_readings",
    "with_asr_batch_size",
    "with_max_sessions",
]

#: :func:`bench.voice_to_voice.concurrent_calls`: N staggered calls to a URL, their results
ConcurrentCalls = Callable[[str, int, float], Awaitable[list[CallResult]]]

#: the name of the ``--baseline-tree`` server in :func:`asr_batch_levels`' results
BASELINE = "baseline tree"

#: a level holds "in real time" for the batched-ASR comparison when its v2v p95 is under this
P95_TARGET_MS = 1500.0


def with_asr_batch_size(path: str, folder: str, size: int, sessions: int) -> Path:
    """A copy of the agent file at ``path`` with ``profile.asr.batch_size: size`` and the
    admission of :func:`with_max_sessions`."""
    data = _admitting(path, sessions, by_load=False)
    data.setdefault("profile", {}).setdefault("asr", {})["batch_size"] = size
    out = Path(folder) / f"asr-batch-{size}.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


def with_max_sessions(path: str, folder: str, sessions: int, *, by_load: bool = False) -> Path:
    """A copy of the agent file at ``path`` with ``server.max_sessions: sessions``: the
    ``--calls`` levels measure what the machine holds, past the admission limit, and so with
    the admission by load off (``server.max_asr_wait_ms: 0``) unless ``by_load`` (which also
    leaves an older tree's agent file, whose schema may not know that key, as it was)."""
    out = Path(folder) / "max-sessions.yaml"
    out.write_text(yaml.safe_dump(_admitting(path, sessions, by_load=by_load)))
    return out


def _admitting(path: str, sessions: int, *, by_load: bool) -> dict[str, Any]:
    """The agent file at ``path`` (as data) with ``server.max_sessions: sessions`` and,
    unless ``by_load``, ``server.max_asr_wait_ms: 0``."""
    data: dict[str, Any] = yaml.safe_load(Path(path).read_text())
    data.setdefault("server", {})["max_sessions"] = sessions
    if not by_load:
        data["server"]["max_asr_wait_ms"] = 0
    return data


def most_sessions(args: argparse.Namespace) -> int:
    """The agent's ``server.max_sessions``, raised to the largest ``--calls`` level."""
    levels: list[int] = args.calls
    return max(load_config(args.config).server.max_sessions, *levels, 1)


async def server_readings(http: str) -> tuple[dict[str, float], int | None]:
    """The server's ``/metrics``, read once: its :func:`executor_counters` and
    ``voxline_asr_final_wait_seconds`` in ms (``None``: a tree without it)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{http}/metrics", timeout=10)).text
    wait = None
    for line in text.splitlines():
        if line.startswith("voxline_asr_final_wait_seconds "):
            wait = round(float(line.rsplit(" ", 1)[1]) * 1000)
    return executor_counters(text), wait


def executor_counters(metrics: str) -> dict[str, float]:
    """The ``voxline_executor_{requests,rejected}_total`` series of a ``/metrics`` text."""
    counters = {}
    for line in metrics.splitlines():
        if line.startswith(("voxline_executor_requests_total", "voxline_executor_rejected_total")):
            series, value = line.rsplit(" ", 1)
            kind = "rejected" if "rejected" in series else "requests"
            executor = series.split('"')[1]  # the one label: executor="..."
            counters[f"{executor} {kind}"] = float(value)
    return counters


async def measure_level(
    server: RunningServer, n: int, stagger: float, concurrent_calls: ConcurrentCalls
) -> dict[str, Any]:
    """``n`` calls at once on ``server`` (``stagger`` seconds between starts): the level's
    summary (:func:`bench.v2v_report.level_summary`), with the executors' counters over it
    and, where the server measures it, the median wait of a final for the ASR over the level's
    last 10 s (``asr_wait_ms``: what ``server.max_asr_wait_ms`` would admit calls by)."""
    at, (before, _) = load(), await server_readings(server.http)
    calls = await concurrent_calls(server.ws, n, stagger)
    after, wait = await server_readings(server.http)
    counts = {k: v - before.get(k, 0.0) for k, v in after.items()}
    level = level_summary(n, calls, at, counts)
    level["asr_wait_ms"] = wait
    return level


def holds_p95(level: dict[str, Any]) -> bool:
    """Every turn answered, no error, v2v p95 under :data:`P95_TARGET_MS`."""
    answered = level["answered"] == level["turns"] and not level["errors"]
    return bool(answered and level["v2v_p95_ms"] < P95_TARGET_MS)


def _title(name: str) -> str:
    return BASELINE if name == BASELINE else f"profile.asr.batch_size: {name}"


def _label(name: str) -> str:
    return BASELINE if name == BASELINE else f"batch_size {name}"


async def asr_batch_levels(
    args: argparse.Namespace, concurrent_calls: ConcurrentCalls
) -> dict[str, list[dict[str, Any]]]:
    """The ``--calls`` levels on one server per ``--asr-batch-sizes`` and, with
    ``--baseline-tree``, one of that tree, interleaved: each server's levels, by batch size
    (``"1"``, ``"4"``) and :data:`BASELINE`."""
    sizes: list[int] = args.asr_batch_sizes
    sessions = most_sessions(args)
    out: dict[str, list[dict[str, Any]]] = {str(size): [] for size in sizes}
    if args.baseline_tree:
        out[BASELINE] = []
    with tempfile.TemporaryDirectory(prefix="voxline-bench-") as folder, ExitStack() as stack:
        servers = {
            str(size): stack.enter_context(
                running_server(str(with_asr_batch_size(args.config, folder, size, sessions)))
            )
            for size in sizes
        }
        if args.baseline_tree:
            # its own code (its folder on the path) with this venv, and its own copy of the
            # agent file where it has one (an older schema refuses keys added since); it may
            # not know profile.asr.batch_size, so only the admission limit is raised
            own = Path(args.baseline_tree) / args.config
            config = with_max_sessions(
                str(own if own.exists() else args.config), folder, sessions, by_load=True
            )
            servers[BASELINE] = stack.enter_context(
                running_server(str(config), env=tree_env(args.baseline_tree))
            )
        live = list(servers)
        for k, n in enumerate(args.calls):
            for name in live[k % len(live) :] + live[: k % len(live)]:  # each first in turn
                level = await measure_level(servers[name], n, args.stagger, concurrent_calls)
                out[name].append(level)
                held = holds_p95(level)
                wait = level["asr_wait_ms"]
                print(
                    f"{_label(name)}, {n} calls: v2v p50 {level['v2v_p50_ms']:.0f} ms, "
                    f"p95 {level['v2v_p95_ms']:.0f} ms, {'held' if held else 'did not hold'} "
                    f"(load {level['load']}"
                    + ("" if wait is None else f"; final's median wait for the ASR {wait} ms")
                    + ")"
                )
                if not held:
                    live.remove(name)
            if not live:
                break
    for name, levels in out.items():
        print(f"\n#### {_title(name)}")
        report_levels(levels)
        kept = [lv["calls"] for lv in levels if holds_p95(lv)]
        print(f"most calls held with v2v p95 < {P95_TARGET_MS:.0f} ms: {max(kept, default=0)}")
    return out
