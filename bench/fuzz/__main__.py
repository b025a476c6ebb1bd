"""Fuzz every parser: ``python -m bench.fuzz --runs 1000000`` (each target in its own process,
``--jobs`` at a time), then a table of inputs tried, crashes and rejections by kind.

A crash (an exception outside the parser's contract, an input over its deadline, too much
memory) ends that target's run: its input is saved under ``--artifacts`` and the run exits 1.
Keep it as a regression (bench/fuzz/regressions.py) once the parser is fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.fuzz import TARGET_MODULES

#: the targets, in the order of the report (their modules are not imported here: each is
#: imported under atheris' instrumentation in its own process)
NAMES = tuple(TARGET_MODULES)


def fuzz_one(
    name: str, runs: int, seed: int, folder: Path, artifacts: Path, timeout: float | None = None
) -> dict[str, Any]:
    """Run one target in a child process; its statistics, with ``crashed`` and the output's
    tail when it did not finish cleanly."""
    stats = folder / f"{name}.json"
    command = [sys.executable, "-m", "bench.fuzz.one", name, "--runs", str(runs)]
    command += ["--seed", str(seed), "--stats", str(stats), "--artifacts", str(artifacts)]
    began = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        returncode, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        returncode, output = -1, f"timed out after {timeout} s: {expired.stderr!r}"
    report: dict[str, Any] = json.loads(stats.read_text()) if stats.exists() else {"inputs": 0}
    report.update(target=name, wall_s=round(time.perf_counter() - began, 1))
    report["crashed"] = returncode != 0
    if returncode != 0:
        report["output"] = output[-4000:]
    return report


def check_seeds(names: list[str]) -> int:
    """Every seed and regression of ``names`` through its target whole (the fuzzer cuts its
    inputs at ``max_len``): 0 if each met the contract, else 1 and what did not."""
    from bench.fuzz.targets import seeds_of, target

    failed = 0
    for name in names:
        fuzzed = target(name)
        seeds = seeds_of(fuzzed)
        for index, seed in enumerate(seeds):
            try:
                fuzzed.run(seed)  # raises on anything outside the contract
            except Exception as error:
                failed += 1
                print(f"{name} seed {index} ({seed[:60]!r}...): {type(error).__name__}: {error}")
        print(f"{name}: {len(seeds)} seeds and regressions")
    return 1 if failed or not names else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--target", action="append", choices=NAMES, help="only these")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/fuzz"))
    parser.add_argument("--json", type=Path, help="write the reports here")
    parser.add_argument(
        "--seeds-only",
        action="store_true",
        help="run every seed and regression whole, in this process, and fuzz nothing",
    )
    args = parser.parse_args()
    names = args.target or list(NAMES)
    if args.seeds_only:
        sys.exit(check_seeds(names))
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"{machine}; {args.runs} inputs per target, seed {args.seed}, {args.jobs} at a time")
    with (
        tempfile.TemporaryDirectory(prefix="voxline-fuzz-") as folder,
        ThreadPoolExecutor(args.jobs) as pool,
    ):
        reports = list(
            pool.map(
                lambda n: fuzz_one(n, args.runs, args.seed, Path(folder), args.artifacts), names
            )
        )
    print("\n| parser | inputs | crashes | accepted | rejected | rejections by kind (inputs) | s |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for r in reports:
        kinds = "; ".join(f"{k}: {v}" for k, v in list(r.get("kinds", {}).items())[:8])
        print(
            f"| {r['target']} | {r['inputs']} | {int(r['crashed'])} | {r.get('accepted', 0)} | "
            f"{r.get('rejected', 0)} | {kinds} | {r['wall_s']} |"
        )
    for r in reports:
        if r["crashed"]:
            print(f"\n{r['target']} crashed:\n{r['output']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "reports": reports}, indent=1))
    sys.exit(1 if any(r["crashed"] for r in reports) else 0)


if __name__ == "__main__":
    main()
