"""Every parser meets its contract under fuzzing (bench/fuzz): it accepts an input, or rejects it
with its documented clear error, and never raises anything else.

Two parts, each the benchmark run as a program (tests never import bench/: test_layering.py):
every seed (10,000-level nesting, huge numbers, long strings and invalid UTF-8, whole: the
fuzzer cuts inputs at a target's ``max_len``) and every input that once crashed a parser, run one
by one; and a short coverage-guided atheris run of each target with a fixed seed
(``python -m bench.fuzz --runs 1000000`` is the long one, BENCHMARKS.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
#: inputs per target in `make test` (about 35 s for all on 2 cores; SSML is the slowest)
SHORT_RUNS = 3000
#: the parsers fuzzed (bench/fuzz's targets): a target left out of a run fails the test
TARGETS = 12


def test_every_seed_and_regression_is_accepted_or_rejected_with_the_parsers_clear_error() -> None:
    command = [sys.executable, "-m", "bench.fuzz", "--seeds-only"]
    done = subprocess.run(["timeout", "600", *command], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert done.stdout.count("seeds and regressions") == TARGETS, done.stdout


def test_a_short_coverage_guided_run_of_every_parser_finds_no_crash(tmp_path: Path) -> None:
    out, artifacts = tmp_path / "fuzz.json", tmp_path / "artifacts"
    command = [sys.executable, "-m", "bench.fuzz", "--runs", str(SHORT_RUNS), "--seed", "1"]
    command += ["--jobs", "2", "--json", str(out), "--artifacts", str(artifacts)]
    done = subprocess.run(["timeout", "900", *command], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    reports = json.loads(out.read_text())["reports"]
    assert len(reports) == TARGETS
    for report in reports:
        assert not report["crashed"], report
        assert report["inputs"] == SHORT_RUNS, report
        assert report["accepted"] + report["rejected"] == SHORT_RUNS, report
    assert not artifacts.exists() or not list(artifacts.iterdir()), "a crash or slow input saved"
