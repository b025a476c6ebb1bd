"""scripts/coverage_gate.py: each gated module held to the floor on its own, run as `make pytest`
runs it, on a coverage.py JSON report and a pyproject table made for each test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.server import ROOT

GATE = ROOT / "scripts" / "coverage_gate.py"

TABLE = """
[tool.voxline.coverage-gate]
fail_under = 95

[tool.voxline.coverage-gate.modules]
protocol = ["proto/*.py"]
security = ["auth.py"]
"""


def run_gate(
    root: Path, figures: dict[str, float], table: str = TABLE
) -> subprocess.CompletedProcess[str]:
    (root / "proto").mkdir(exist_ok=True)
    for name in ("proto/wire.py", "proto/codec.py", "auth.py"):
        (root / name).touch()
    (root / "pyproject.toml").write_text(table)
    report = {"files": {name: {"summary": {"percent_covered": p}} for name, p in figures.items()}}
    (root / "coverage.json").write_text(json.dumps(report))
    command = [sys.executable, str(GATE), "--root", str(root)]
    command += ["--config", str(root / "pyproject.toml"), "--report", str(root / "coverage.json")]
    return subprocess.run(["timeout", "60", *command], capture_output=True, text=True, check=False)


def test_every_module_at_the_floor_passes_and_each_is_listed(tmp_path: Path) -> None:
    done = run_gate(tmp_path, {"proto/wire.py": 95.0, "proto/codec.py": 100.0, "auth.py": 99.5})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    listed = [line.split()[1] for line in done.stdout.splitlines()[1:]]
    assert listed == ["proto/wire.py", "auth.py", "proto/codec.py"]  # lowest first


def test_one_module_below_fails_though_the_average_is_above(tmp_path: Path) -> None:
    done = run_gate(tmp_path, {"proto/wire.py": 94.9, "proto/codec.py": 100.0, "auth.py": 100.0})
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["coverage gate: FAILED proto/wire.py: 94.90% < 95%"]


def test_a_module_the_report_does_not_hold_fails(tmp_path: Path) -> None:
    done = run_gate(tmp_path, {"proto/wire.py": 100.0, "proto/codec.py": 100.0})
    assert done.returncode == 1
    assert "auth.py: not in the report (never measured)" in done.stderr


def test_a_pattern_that_matches_no_file_fails(tmp_path: Path) -> None:
    table = TABLE.replace('["auth.py"]', '["auth.py", "gone.py"]')
    figures = {"proto/wire.py": 100.0, "proto/codec.py": 100.0, "auth.py": 100.0}
    done = run_gate(tmp_path, figures, table)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["coverage gate: FAILED gone.py: matches no file"]


def test_a_table_without_its_floor_is_a_configuration_error(tmp_path: Path) -> None:
    done = run_gate(tmp_path, {}, TABLE.replace("fail_under = 95", ""))
    assert done.returncode == 2
    assert "no [tool.voxline.coverage-gate] with fail_under and modules" in done.stderr


def test_a_report_that_is_not_coverage_json_is_a_configuration_error(tmp_path: Path) -> None:
    run_gate(tmp_path, {})
    (tmp_path / "coverage.json").write_text("[]")
    command = [sys.executable, str(GATE), "--root", str(tmp_path)]
    command += ["--config", str(tmp_path / "pyproject.toml")]
    command += ["--report", str(tmp_path / "coverage.json")]
    done = subprocess.run(["timeout", "60", *command], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "not a coverage.py JSON report" in done.stderr


def test_every_pattern_of_the_projects_gate_names_a_module_of_the_checkout(tmp_path: Path) -> None:
    """A renamed or moved module must not leave the gate quietly: here every file of the
    checkout is at 100%, so only a pattern that matches nothing can fail."""
    sources = [p for package in ("agent", "transports") for p in (ROOT / package).rglob("*.py")]
    report = {
        "files": {
            p.relative_to(ROOT).as_posix(): {"summary": {"percent_covered": 100.0}} for p in sources
        }
    }
    (tmp_path / "coverage.json").write_text(json.dumps(report))
    command = [sys.executable, str(GATE), "--report", str(tmp_path / "coverage.json")]
    done = subprocess.run(["timeout", "60", *command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    gated = {line.split()[1] for line in done.stdout.splitlines()[1:]}
    assert {"transports/native.py", "agent/auth.py", "transports/sip/sdp.py"} <= gated
