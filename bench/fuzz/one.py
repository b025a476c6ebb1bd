"""Fuzz one target in this process, with atheris: ``python -m bench.fuzz.one NAME --runs N``.

libFuzzer owns the process: it ends it when the runs are done (exit 0) or at the first crash
(an exception the contract does not allow, a timeout, too much memory: exit non-zero, the
input saved under ``--artifacts``). So the statistics (inputs tried, accepted, rejections by
kind) are written to ``--stats`` (JSON) as the run goes and when its last input is done.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import atheris

from bench.fuzz import TARGET_MODULES
from bench.fuzz.targets import seeds_of, target


class Stats:
    def __init__(self, target: str, runs: int, path: Path) -> None:
        self.target = target
        self.runs = runs
        self.path = path
        self.inputs = 0
        self.accepted = 0
        self.kinds: Counter[str] = Counter()
        self.started = time.perf_counter()

    def add(self, kinds: list[str]) -> None:
        self.inputs += 1
        if kinds:
            self.kinds.update(set(kinds))
        else:
            self.accepted += 1
        if self.inputs == self.runs or self.inputs % 5000 == 0:
            self.write()

    def write(self) -> None:
        report = {
            "target": self.target,
            "inputs": self.inputs,
            "accepted": self.accepted,
            "rejected": self.inputs - self.accepted,
            "kinds": dict(self.kinds.most_common()),
            "seconds": round(time.perf_counter() - self.started, 1),
        }
        self.path.write_text(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", choices=sorted(TARGET_MODULES))
    parser.add_argument("--runs", type=int, default=10_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument("--stats", type=Path, required=True, help="where the JSON goes")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/fuzz"))
    parser.add_argument("--timeout", type=int, default=20, help="seconds one input may take")
    parser.add_argument("--corpus", type=Path, help="the corpus folder (default: beside --stats)")
    args = parser.parse_args()
    with atheris.instrument_imports(include=["bench.fuzz", *TARGET_MODULES[args.target][1]]):
        fuzzed = target(args.target)
    stats = Stats(fuzzed.name, args.runs, args.stats)
    args.artifacts.mkdir(parents=True, exist_ok=True)

    def one_input(data: bytes) -> None:
        stats.add(fuzzed.run(data))

    # libFuzzer adds what reaches new code to the corpus folder; it never returns to remove
    # it, so the folder is the caller's (beside the statistics, in the caller's temporary one)
    corpus = args.corpus or args.stats.with_name(f"{fuzzed.name}-corpus")
    corpus.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds_of(fuzzed)):
        (corpus / f"seed-{index:03d}").write_bytes(seed)
    libfuzzer = [
        sys.argv[0],
        f"-runs={args.runs}",
        f"-seed={args.seed}",
        f"-max_len={fuzzed.max_len}",
        f"-timeout={args.timeout}",
        "-rss_limit_mb=3072",
        "-print_final_stats=1",
        f"-artifact_prefix={args.artifacts}/{fuzzed.name}-",
        str(corpus),
    ]
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()  # never returns: libFuzzer exits


if __name__ == "__main__":
    main()
