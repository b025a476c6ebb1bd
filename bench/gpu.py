"""The GPU profile's models on one GPU, without weights: batch sweeps and calls per GPU.

``bash bench/gpu.sh`` (the device machine's one command) or ``python bench/gpu.py``. Builds
full-size architectures with random weights (nothing is downloaded, no weights exist on the
benchmark machines) and measures, per model, the seconds per batch (CUDA-synchronised, the
median of ``--repeats`` runs after ``--warmup``) and the throughput for batch sizes 1, 2, 4, ...
until it grows by less than 5% (or memory or ``--budget-s`` runs out):

- **Whisper large-v3-turbo** (:mod:`bench.gpu_whisper`): windows per second, each a 10 s
  window (Voxline's ``min_window``) encoded and decoded greedily for exactly
  ``--decode-tokens`` tokens; through CTranslate2 float16 when it runs on the device (what
  Voxline runs), else the same architecture in torch float16 (a stand-in; said in the output).
- **StyleTTS2 LibriTTS** (:mod:`bench.gpu_styletts2`): audio seconds per second, each item one
  clause of ``--phonemes`` phonemes at ``--frames-per-phoneme`` frames each (3.0 s), through
  Voxline's own StyleTTS2 model in float32.

Then it projects the calls one GPU serves at a stated per-call load (per minute of
conversation: ``--turns-per-minute`` caller turns of ``--decodes-per-turn`` ASR decodes, the
partials and the final, as measured in BENCHMARKS.md "Concurrent calls"; and
``--speech-seconds-per-minute`` of bot speech), with the GPU busy at most ``--utilization``:

- **shared executor** (Voxline's design: one worker per model per device, batched): calls =
  best throughput x utilization / per-call load;
- **one model instance per call** (the peers' design): calls = the fewer of the instances
  that fit in GPU memory (the device memory one instance takes at batch 1, against 90% of the
  GPU) and the calls batch-1 throughput carries.

The LLM (vLLM, ``configs/gpu.yaml``: 60% of GPU memory) is not measured here.

Prints markdown tables; writes JSON to ``--json`` (default ``$OUT/gpu.json`` when ``$OUT`` is
set), rewritten after each model so a run cut short keeps what it measured. ``--tiny --device
cpu`` runs tiny configs at batch sizes 1 and 2 in seconds (the test's smoke run).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `bench` and the project importable
    sys.path.insert(0, str(ROOT))

#: a batch's throughput must beat the previous batch size's by this much to go on
MIN_GAIN = 0.05
#: the share of GPU memory per-call instances may fill
MEMORY_SHARE = 0.9


@dataclass(frozen=True)
class Load:
    """One call's work per minute of conversation."""

    turns_per_minute: float = 4.0
    decodes_per_turn: float = 3.3
    speech_seconds_per_minute: float = 30.0
    utilization: float = 0.7

    @property
    def windows_per_second(self) -> float:
        return self.turns_per_minute * self.decodes_per_turn / 60

    @property
    def speech_per_second(self) -> float:
        return self.speech_seconds_per_minute / 60


@dataclass
class Point:
    batch: int
    seconds: float  # median seconds per batch
    runs: list[float]
    throughput: float  # units per second
    memory_bytes: int | None  # device memory the model holds after this batch size


@dataclass
class Result:
    name: str
    backend: str
    unit: str
    work: str
    config: dict[str, Any]
    parameters: int
    points: list[Point] = field(default_factory=list)
    stopped: str = ""
    instance_memory_bytes: int | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    load_per_call: float = 0.0  # units per second one call needs
    projection: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Runner:
    """A built model: ``run(batch)`` does one batch; ``per_item`` units each item yields."""

    result: Result
    run: Callable[[int], None]
    per_item: float
    #: run after the sweep (a check of its own, then cleanup)
    close: Callable[[], None] = lambda: None


class Device:
    def __init__(self, name: str) -> None:
        import torch

        self.name = name
        self.torch = torch
        self.cuda = name.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def free(self) -> int | None:
        if not self.cuda:
            return None
        self.sync()
        return int(self.torch.cuda.mem_get_info()[0])

    def total(self) -> int | None:
        return int(self.torch.cuda.mem_get_info()[1]) if self.cuda else None

    def release(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()


def _out_of_memory(error: BaseException) -> bool:
    return "out of memory" in str(error).lower()


def sweep(
    runner: Runner, device: Device, args: argparse.Namespace, deadline: float, before: int | None
) -> None:
    """Fill ``runner.result.points`` (the rule: the module docstring).

    ``before``: the device's free memory before the model was built.
    """
    result = runner.result
    batches = [1, 2] if args.tiny else [2**i for i in range(args.max_batch.bit_length())]
    for batch in batches:
        if time.monotonic() > deadline:
            result.stopped = f"time budget spent before batch {batch}"
            return
        try:
            for _ in range(args.warmup):
                runner.run(batch)
            device.sync()
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                runner.run(batch)
                device.sync()
                runs.append(time.perf_counter() - start)
        except (RuntimeError, MemoryError) as error:
            if not _out_of_memory(error):
                raise
            device.release()
            result.stopped = f"out of memory at batch {batch}"
            return
        seconds = statistics.median(runs)
        free = device.free()
        used = before - free if before is not None and free is not None else None
        point = Point(batch, seconds, runs, batch * runner.per_item / seconds, used)
        result.points.append(point)
        if batch == 1:
            result.instance_memory_bytes = used
        if len(result.points) > 1 and not args.tiny:
            previous = result.points[-2]
            if point.throughput < previous.throughput * (1 + MIN_GAIN):
                result.stopped = (
                    f"throughput grew under {MIN_GAIN:.0%} from batch {previous.batch} to {batch}"
                )
                return
    result.stopped = f"largest batch tried ({batches[-1]})"


# -- the models --------------------------------------------------------------------------------


def ctranslate2_usable(device: str) -> tuple[bool, str]:
    """Whether CTranslate2 decodes on ``device``, asked of a child process (it may abort)."""
    try:
        import ctranslate2
    except ImportError:
        return False, "ctranslate2 is not installed"
    try:
        devices = ctranslate2.get_cuda_device_count()
    except RuntimeError as error:
        return False, f"ctranslate2 cannot count CUDA devices: {error}"
    if device.startswith("cuda") and devices < 1:
        return False, f"ctranslate2 {ctranslate2.__version__} sees no CUDA device"
    try:
        child = subprocess.run(
            [sys.executable, "-m", "bench.gpu_whisper", "--probe", device],
            cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False, "the ctranslate2 probe timed out"
    said = (child.stdout + child.stderr).strip().splitlines()[-3:]
    return child.returncode == 0, f"probe exit {child.returncode}: " + " | ".join(said)


def whisper_runner(args: argparse.Namespace, device: Device, backend: str) -> Runner:
    import numpy as np
    import torch

    from bench import gpu_whisper as w

    size = w.TINY if args.tiny else w.LARGE_V3_TURBO
    tokens = args.decode_tokens
    work = f"10 s window ({w.WINDOW_FRAMES} mel frames), {tokens} greedy tokens"
    fp16 = device.cuda
    precision = "float16" if fp16 else "float32"
    seen: dict[int, int] = {}
    if backend == "ctranslate2":
        folder = tempfile.TemporaryDirectory()
        model = w.build_ctranslate2(size, device.name, precision, Path(folder.name) / "model")
        mels = {}

        def run(batch: int) -> None:
            if batch not in mels:
                shape = (batch, size.n_mels, w.WINDOW_FRAMES)
                mels[batch] = np.random.default_rng(batch).standard_normal(shape, np.float32)
            out = model.transcribe(mels[batch], tokens)
            seen[batch] = min(len(t) for t in out)

        label = f"ctranslate2 {precision} (what Voxline runs)"
        close = folder.cleanup
    else:
        dtype = torch.float16 if fp16 else torch.float32
        net = w.build_torch(size, device.name, dtype)
        tensors: dict[int, torch.Tensor] = {}

        def run(batch: int) -> None:
            if batch not in tensors:
                shape = (batch, size.n_mels, w.WINDOW_FRAMES)
                tensors[batch] = torch.randn(shape, device=device.name, dtype=dtype)
            with torch.inference_mode():
                seen[batch] = net.transcribe(tensors[batch], tokens).shape[1]

        label = f"torch {precision} (a stand-in for CTranslate2: same architecture)"
        close = _nothing
    params = model.parameters if backend == "ctranslate2" else w.count(net)
    result = Result(size.name, label, "windows", work, size.parameters(), params)
    result.checks["tokens_per_window"] = seen
    return Runner(result, run, 1.0, close=close)


def _nothing() -> None:
    pass


def styletts2_runner(args: argparse.Namespace, device: Device, how: str) -> Runner:
    import torch

    from bench import gpu_styletts2 as s
    from voices.styletts2.styles import Knobs

    config = s.tiny() if args.tiny else s.libritts()
    model = s.build(config, device.name)
    rate = config.sample_rate
    frames = args.frames_per_phoneme
    clause = args.phonemes * frames * config.frame_samples / rate
    generator = torch.Generator(device=device.name).manual_seed(0)
    tokens: dict[int, torch.Tensor] = {}
    samples: dict[int, int] = {}

    def run(batch: int) -> None:
        if batch not in tokens:
            shape = (batch, args.phonemes)
            tokens[batch] = torch.randint(0, s.N_TOKENS, shape, device=device.name)
        with torch.inference_mode():
            samples[batch] = s.synthesize_batch(model, tokens[batch], frames, generator).shape[1]

    m = config.model_params
    sizes = {
        "multispeaker": m.multispeaker, "hidden_dim": m.hidden_dim, "style_dim": m.style_dim,
        "n_layer": m.n_layer, "n_token": m.n_token, "decoder": m.decoder.type,
        "upsample_rates": list(m.decoder.upsample_rates),
        "upsample_initial_channel": m.decoder.upsample_initial_channel,
        "plbert_hidden": config.plbert.hidden_size,
        "plbert_layers": config.plbert.num_hidden_layers,
        "sample_rate": rate, "hop_length": config.hop_length,
        "diffusion_steps": Knobs().diffusion_steps, "msgspec": how,
    }  # fmt: skip
    work = f"{args.phonemes} phonemes x {frames} frames = {clause:.2f} s of audio"
    params = sum(p.numel() for p in model.parameters())
    label = "torch float32: Voxline's StyleTTS2 model, as the engine loads it"
    name = "styletts2-tiny-random" if args.tiny else "styletts2-libritts"
    result = Result(name, label, "audio seconds", work, sizes, params)
    result.checks["samples_per_clause"] = samples
    result.checks["expected_samples"] = args.phonemes * frames * config.frame_samples

    def close() -> None:
        # the engine's own path at batch 1 (StyleTTS2Model.synthesize), same clause
        one = tokens.get(1)
        if one is None:
            return
        runs = []
        with torch.inference_mode():
            for i in range(args.warmup + args.repeats):
                start = time.perf_counter()
                n = s.synthesize_one(model, one, frames, generator)
                device.sync()
                if i >= args.warmup:
                    runs.append(time.perf_counter() - start)
        result.checks["engine_path_batch1"] = {"seconds": statistics.median(runs), "samples": n}

    return Runner(result, run, clause, close=close)


# -- projection and output -----------------------------------------------------------------------


def project(result: Result, load: float, utilization: float, total: int | None) -> None:
    result.load_per_call = load
    if not result.points:
        return
    best = max(result.points, key=lambda p: p.throughput)
    one = result.points[0]
    compute = math.floor(one.throughput * utilization / load)
    fit = None
    if total is not None and result.instance_memory_bytes:
        fit = math.floor(total * MEMORY_SHARE / result.instance_memory_bytes)
    result.projection = {
        "shared": {
            "batch": best.batch,
            "seconds_per_batch": best.seconds,
            "throughput": best.throughput,
            "calls": math.floor(best.throughput * utilization / load),
        },
        "per_call_instance": {
            "memory_bytes": result.instance_memory_bytes,
            "fit_in_memory": fit,
            "batch1_throughput": one.throughput,
            "calls_by_compute": compute,
            "calls": compute if fit is None else min(fit, compute),
        },
    }


def combined(results: list[Result], utilization: float, total: int | None) -> dict[str, Any]:
    """ASR and TTS on one GPU together (the LLM not counted; the first ASR backend measured)."""
    done = [r for r in results if r.projection]
    done = [r for i, r in enumerate(done) if r.unit not in {q.unit for q in done[:i]}]
    if len(done) < 2:
        return {}
    shared = sum(r.load_per_call / r.projection["shared"]["throughput"] for r in done)
    single = sum(r.load_per_call / r.points[0].throughput for r in done)
    memory = [r.instance_memory_bytes for r in done]
    compute = math.floor(utilization / single)
    fit: int | None = None
    if total is not None and all(memory):
        fit = math.floor(total * MEMORY_SHARE / sum(m for m in memory if m))
    return {
        "models": [f"{r.name} ({r.backend})" for r in done],
        "shared_calls": math.floor(utilization / shared),
        "per_call_instance_calls": compute if fit is None else min(fit, compute),
        "per_call_instance_fit_in_memory": fit,
    }


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def markdown(report: dict[str, Any], results: list[Result]) -> str:
    lines = [f"GPU profile benchmark: {report['device']['name']} ({report['device']['kind']})", ""]
    for r in results:
        lines.append(f"### {r.name}: {r.backend}")
        lines.append(f"{r.parameters / 1e6:.1f} M parameters; one item: {r.work}.")
        if r.error:
            lines.append(f"**failed**: {r.error}")
        lines += ["", f"| batch | s / batch (median) | {r.unit} / s | gain | device memory |"]
        lines.append("|---|---|---|---|---|")
        previous = None
        for p in r.points:
            gain = "" if previous is None else f"{p.throughput / previous - 1:+.0%}"
            mem = _gib(p.memory_bytes)
            lines.append(f"| {p.batch} | {p.seconds:.4f} | {p.throughput:.2f} | {gain} | {mem} |")
            previous = p.throughput
        lines.append(f"stopped: {r.stopped}")
        lines += [f"check {key}: {value}" for key, value in r.checks.items()] + [""]
    lines += _projection_lines(report, results)
    return "\n".join(lines)


def _projection_lines(report: dict[str, Any], results: list[Result]) -> list[str]:
    load = report["load"]
    lines = [
        f"Per-call load (per minute of conversation): {load['turns_per_minute']} turns x "
        f"{load['decodes_per_turn']} ASR decodes; {load['speech_seconds_per_minute']} s of bot "
        f"speech; GPU busy at most {load['utilization']:.0%}.",
        "",
        "| model | per call | shared executor: batch, s/batch, calls | one instance per call: "
        "memory, fit, batch-1 calls, calls |",
        "|---|---|---|---|",
    ]
    for r in results:
        if not r.projection:
            continue
        s, c = r.projection["shared"], r.projection["per_call_instance"]
        fit = "n/a" if c["fit_in_memory"] is None else c["fit_in_memory"]
        lines.append(
            f"| {r.name} ({r.backend.split()[0]}) | {r.load_per_call:.3f} {r.unit}/s | "
            f"{s['batch']}, {s['seconds_per_batch']:.3f} s, **{s['calls']}** | "
            f"{_gib(c['memory_bytes'])}, {fit}, {c['calls_by_compute']}, **{c['calls']}** |"
        )
    both = report.get("combined")
    if both:
        lines += [
            "",
            "ASR and TTS together on this device (no LLM): shared executors "
            f"**{both['shared_calls']}** calls; one instance of each per call "
            f"**{both['per_call_instance_calls']}** calls.",
        ]
    return lines


def environment(device: Device) -> dict[str, Any]:
    torch = device.torch
    versions: dict[str, str | None] = {}
    for package in ("torch", "ctranslate2", "transformers", "numpy", "msgspec"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    name = torch.cuda.get_device_name() if device.cuda else platform.processor() or "cpu"
    return {
        "device": {"kind": device.name, "name": name, "total_memory_bytes": device.total()},
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "versions": versions,
    }


def _json_path(value: str | None) -> Path | None:
    if value:
        return Path(value)
    out = os.environ.get("OUT")
    return Path(out) / "gpu.json" if out else None


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny configs, batch 1 and 2 (smoke run)")
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--models", default="whisper,styletts2")
    p.add_argument(
        "--whisper-backend", choices=("auto", "ctranslate2", "torch", "both"), default="auto"
    )
    p.add_argument("--max-batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--budget-s", type=float, default=150.0, help="sweep time per model")
    p.add_argument("--decode-tokens", type=int, default=24)
    p.add_argument("--phonemes", type=int, default=60)
    p.add_argument("--frames-per-phoneme", type=int, default=2)
    p.add_argument("--turns-per-minute", type=float, default=Load.turns_per_minute)
    p.add_argument("--decodes-per-turn", type=float, default=Load.decodes_per_turn)
    p.add_argument(
        "--speech-seconds-per-minute", type=float, default=Load.speech_seconds_per_minute
    )
    p.add_argument("--utilization", type=float, default=Load.utilization)
    p.add_argument("--msgspec-stand-in", action="store_true", help="even when msgspec imports")
    p.add_argument("--json", default=None, help="default: $OUT/gpu.json when $OUT is set")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.tiny else 2
    if args.repeats is None:
        args.repeats = 3 if args.tiny else 5
    sizes = (args.decode_tokens, args.phonemes, args.frames_per_phoneme, args.repeats, args.warmup)
    if min(sizes) < 1:
        # a warm-up also calibrates CTranslate2's max_length (bench/gpu_whisper.py)
        p.error("--decode-tokens, --phonemes, --frames-per-phoneme, --repeats, --warmup: >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        import torch
    except ImportError:
        print("bench/gpu.py needs torch (and numpy); neither model can be built without it")
        return 2
    device = Device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    load = Load(
        args.turns_per_minute, args.decodes_per_turn, args.speech_seconds_per_minute,
        args.utilization,
    )  # fmt: skip
    torch.manual_seed(0)
    report: dict[str, Any] = {
        "schema": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tiny": args.tiny,
        **environment(device),
        "load": {**asdict(load), "windows_per_second": load.windows_per_second,
                 "speech_per_second": load.speech_per_second},
        "notes": [],
        "models": [],
    }  # fmt: skip
    path = _json_path(args.json)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    results: list[Result] = []
    for plan in _plan(models, args, device, report):
        result = _measure(plan, args, device, load)
        results.append(result)
        report["models"] = [asdict(r) for r in results]
        report["combined"] = combined(results, load.utilization, device.total())
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2))
    print(markdown(report, results))
    for note in report["notes"]:
        print(f"note: {note}")
    if path is not None:
        print(f"JSON: {path}")
    return 1 if any(r.error for r in results) else 0


def _plan(
    models: list[str], args: argparse.Namespace, device: Device, report: dict[str, Any]
) -> list[Callable[[], Runner]]:
    plans: list[Callable[[], Runner]] = []
    if "whisper" in models:
        backends = [args.whisper_backend]
        if args.whisper_backend in ("auto", "both"):
            usable, why = ctranslate2_usable(device.name)
            report["ctranslate2_probe"] = {"usable": usable, "said": why}
            if not usable:
                report["notes"].append(f"Whisper runs in torch, not CTranslate2: {why}")
            if args.whisper_backend == "both":
                backends = ["ctranslate2", "torch"] if usable else ["torch"]
            else:
                backends = ["ctranslate2" if usable else "torch"]
        plans += [functools.partial(whisper_runner, args, device, b) for b in backends]
    if "styletts2" in models:
        from bench import gpu_styletts2

        how = gpu_styletts2.import_model(stand_in=args.msgspec_stand_in)
        if "stand-in" in how:
            report["notes"].append(f"StyleTTS2 config structs: {how}")
        plans.append(functools.partial(styletts2_runner, args, device, how))
    return plans


def _measure(
    plan: Callable[[], Runner], args: argparse.Namespace, device: Device, load: Load
) -> Result:
    device.release()
    before = device.free()
    try:
        runner = plan()
    except Exception as error:
        traceback.print_exc()
        return Result("?", "?", "?", "?", {}, 0, error=f"build failed: {error!r}")
    result = runner.result
    try:
        sweep(runner, device, args, time.monotonic() + args.budget_s, before)
        runner.close()
    except Exception as error:
        traceback.print_exc()
        result.error = f"{type(error).__name__}: {error}"
    per_call = load.windows_per_second if result.unit == "windows" else load.speech_per_second
    project(result, per_call, load.utilization, device.total())
    del runner
    device.release()
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
