"""The GPU benchmark (bench/gpu.py) runs end to end on the CPU with tiny random models.

Run as a program, never imported (tests never import bench/, see test_layering.py): the smoke
run's JSON has every model at batch sizes 1 and 2 with positive times and throughputs, the fixed
decode length and audio length the benchmark promises, and a projection of calls. The figures
themselves mean nothing on a CPU with tiny models.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 24  # the benchmark's default decode length


def run_bench(tmp_path: Path, *options: str) -> tuple[dict[str, Any], str]:
    report = tmp_path / "gpu.json"
    command = [sys.executable, "bench/gpu.py", "--tiny", "--device", "cpu", "--json", str(report)]
    done = subprocess.run(
        ["timeout", "300", *command, *options],
        cwd=ROOT, capture_output=True, text=True, timeout=330, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(report.read_text())
    return loaded, done.stdout


def assert_measured(model: dict[str, Any], repeats: int = 3) -> None:
    assert model["error"] is None, model["error"]
    assert model["parameters"] > 0
    assert [p["batch"] for p in model["points"]] == [1, 2]
    for point in model["points"]:
        assert len(point["runs"]) == repeats
        assert all(run > 0 for run in point["runs"])
        assert point["seconds"] > 0
        assert point["throughput"] > 0
    assert model["load_per_call"] > 0
    shared, single = model["projection"]["shared"], model["projection"]["per_call_instance"]
    assert shared["batch"] in (1, 2)
    assert shared["throughput"] == max(p["throughput"] for p in model["points"])
    assert shared["calls"] >= 0
    assert single["batch1_throughput"] == model["points"][0]["throughput"]
    assert single["fit_in_memory"] is None  # no GPU memory to fill on the CPU


def test_the_smoke_run_measures_whisper_on_both_backends_and_styletts2(tmp_path: Path) -> None:
    report, printed = run_bench(tmp_path, "--whisper-backend", "both")
    assert report["schema"] == 1
    assert report["tiny"] is True
    assert report["device"]["kind"] == "cpu"
    assert report["load"]["windows_per_second"] == pytest.approx(4.0 * 3.3 / 60)
    assert report["load"]["speech_per_second"] == pytest.approx(0.5)
    models = report["models"]
    backends = [m["backend"].split()[0] for m in models if m["unit"] == "windows"]
    ct2 = importlib.util.find_spec("ctranslate2") is not None
    assert backends == (["ctranslate2", "torch"] if ct2 else ["torch"])
    for model in models:
        assert_measured(model)
        if model["unit"] == "windows":
            assert model["name"] == "whisper-tiny-random"
            assert model["checks"]["tokens_per_window"] == {"1": TOKENS, "2": TOKENS}
    (tts,) = [m for m in models if m["unit"] == "audio seconds"]
    expected = tts["checks"]["expected_samples"]
    assert set(tts["checks"]["samples_per_clause"].values()) == {expected}
    assert tts["checks"]["engine_path_batch1"]["samples"] == expected
    assert tts["config"]["msgspec"] == "msgspec"
    assert report["combined"]["shared_calls"] > 0
    assert len(report["combined"]["models"]) == 2  # one ASR backend and the TTS
    assert "| batch | s / batch (median) |" in printed
    assert "shared executor" in printed


def test_styletts2_builds_with_the_msgspec_stand_in(tmp_path: Path) -> None:
    """The GPU machines may lack msgspec: the model still builds and speaks through a stand-in."""
    report, _ = run_bench(tmp_path, "--models", "styletts2", "--msgspec-stand-in")
    (tts,) = report["models"]
    assert_measured(tts)
    assert tts["config"]["msgspec"] == "msgspec stand-in (asked for)"
    assert any("stand-in" in note for note in report["notes"])
    assert report["combined"] == {}


def test_the_ctranslate2_conversion_computes_what_the_torch_model_does() -> None:
    """The benchmark writes its random Whisper into CTranslate2's spec itself (no transformers):
    a tiny model's encoder output and greedy tokens agree between the two backends."""
    pytest.importorskip("ctranslate2")
    done = subprocess.run(
        ["timeout", "120", sys.executable, "-m", "bench.gpu_whisper", "--compare"],
        cwd=ROOT, capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "encoder outputs differ by at most" in done.stdout
