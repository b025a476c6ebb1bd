#!/usr/bin/env bash
# The GPU profile benchmark in one command, for a lent GPU machine (no network, no weights):
#   bash bench/gpu.sh [bench/gpu.py options]
# Prints the GPU, the Python and library versions, then bench/gpu.py's tables; writes
# $OUT/gpu.json and $OUT/gpu.md ($OUT defaults to artifacts/gpu). Everything runs under
# `timeout 480` (the device tool's runs are short), the benchmark itself under 450 s; gpu.py
# rewrites its JSON after each model, so a run cut short keeps what it measured.
#
# PYTHON picks the interpreter (default: python3, the machine's torch environment). Wheels put
# in bench/wheels/ (for instance a ctranslate2 wheel built for the machine's CUDA) are
# installed into a temporary folder first, without dependencies and without the network.
set -uo pipefail
if [ -z "${VOXLINE_GPU_BENCH_TIMED:-}" ]; then
    VOXLINE_GPU_BENCH_TIMED=1 exec timeout 480 bash "$0" "$@"
fi
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-artifacts/gpu}
export OUT
mkdir -p "$OUT"

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
if command -v nvidia-smi >/dev/null; then
    timeout 30 nvidia-smi -L
    timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
    echo "no nvidia-smi: no NVIDIA GPU here"
fi

if compgen -G "bench/wheels/*.whl" >/dev/null; then
    site=$(mktemp -d)
    trap 'rm -rf "$site"' EXIT
    timeout 120 "$PYTHON" -m pip install -q --no-index --no-deps --target "$site" bench/wheels/*.whl \
        && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

timeout 60 "$PYTHON" - <<'PY'
import importlib.metadata as m, platform
print("python", platform.python_version())
for name in ("torch", "ctranslate2", "transformers", "numpy", "msgspec", "onnxruntime"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "not installed")
try:
    import torch
    print("torch cuda", torch.version.cuda, "available", torch.cuda.is_available())
except ImportError:
    pass
PY

timeout 450 "$PYTHON" bench/gpu.py "$@" | tee "$OUT/gpu.md"
status=${PIPESTATUS[0]}
if [ "$status" = 124 ]; then
    echo "bench/gpu.py ran past 450 s: $OUT/gpu.json holds the models it finished"
fi
exit "$status"
