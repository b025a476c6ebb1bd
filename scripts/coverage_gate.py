"""The coverage gate of ``make pytest``: each protocol and security module at its floor or above.

``python scripts/coverage_gate.py [--report artifacts/coverage.json] [--config pyproject.toml]``

The floor and the modules (glob patterns relative to the checkout, in named groups) are read
from pyproject.toml's ``[tool.voxline.coverage-gate]``; each module's own figure (statements
and branches together, as ``coverage report`` counts them) from coverage.py's JSON report
(``coverage json``). Every module is held to the floor on its own, never the average, so a
well-tested big module cannot hide a neglected small one. A pattern that matches no file, and a
matched file the report does not hold, fail the gate too: a renamed or never-measured module
would otherwise leave it without a word.

Prints one line per gated module, lowest first. Exit status: 0 when every module is at the
floor; 1 when one is below it or unmeasured (each named); 2 when the configuration or the
report cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = "tool.voxline.coverage-gate"


class GateConfigError(Exception):
    """The gate's table, or the report, is missing or malformed (exit status 2)."""


@dataclass(frozen=True)
class Gate:
    fail_under: float
    #: group name -> glob patterns, relative to the checkout
    groups: Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Figure:
    group: str
    path: str
    #: None when the report does not hold the module
    percent: float | None


def read_gate(pyproject: Path) -> Gate:
    """The floor and the groups of patterns in ``[tool.voxline.coverage-gate]``."""
    try:
        table = tomllib.loads(pyproject.read_text())
        for key in TABLE.split("."):
            table = table[key]
        fail_under = table["fail_under"]
        groups = table["modules"]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as error:
        raise GateConfigError(f"{pyproject}: no [{TABLE}] with fail_under and modules") from error
    if not isinstance(fail_under, int | float) or not 0 <= fail_under <= 100:
        raise GateConfigError(f"{pyproject}: [{TABLE}] fail_under must be a percentage")
    if not isinstance(groups, dict) or not groups:
        raise GateConfigError(f"{pyproject}: [{TABLE}.modules] must name groups of patterns")
    for name, patterns in groups.items():
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise GateConfigError(f"{pyproject}: [{TABLE}.modules] {name} must be a list of globs")
    return Gate(float(fail_under), groups)


def read_report(report: Path) -> dict[str, float]:
    """Each measured file's percentage (its path relative to the checkout, with ``/``)."""
    try:
        files = json.loads(report.read_text())["files"]
        return {
            Path(name).as_posix(): float(data["summary"]["percent_covered"])
            for name, data in files.items()
        }
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GateConfigError(f"{report}: not a coverage.py JSON report ({error})") from error


def figures(
    gate: Gate, measured: Mapping[str, float], root: Path
) -> tuple[list[Figure], list[str]]:
    """Each gated module's figure, and the patterns that match no file."""
    found: dict[str, Figure] = {}
    unmatched: list[str] = []
    for group, patterns in gate.groups.items():
        for pattern in patterns:
            paths = sorted(p.relative_to(root).as_posix() for p in root.glob(pattern))
            if not paths:
                unmatched.append(pattern)
            for path in paths:
                found.setdefault(path, Figure(group, path, measured.get(path)))
    return sorted(found.values(), key=lambda f: (f.percent or 0.0, f.path)), unmatched


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, default=ROOT / "artifacts" / "coverage.json")
    parser.add_argument("--config", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--root", type=Path, default=ROOT, help="where the patterns are rooted")
    args = parser.parse_args(argv)
    try:
        gate = read_gate(args.config)
        measured = read_report(args.report)
    except GateConfigError as error:
        print(f"coverage gate: {error}", file=sys.stderr)
        return 2
    gated, unmatched = figures(gate, measured, args.root.resolve())
    failures = [f"{pattern}: matches no file" for pattern in unmatched]
    print(f"coverage gate: each module at least {gate.fail_under:g}% (statements and branches)")
    for figure in gated:
        if figure.percent is None:
            failures.append(f"{figure.path}: not in the report (never measured)")
            shown = "   --"
        else:
            shown = f"{figure.percent:5.1f}%"
            if figure.percent < gate.fail_under:
                failures.append(f"{figure.path}: {figure.percent:.2f}% < {gate.fail_under:g}%")
        print(f"  {shown}  {figure.path}  ({figure.group})")
    for failure in failures:
        print(f"coverage gate: FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
