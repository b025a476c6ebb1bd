#!/usr/bin/env bash
# Build llama-cpp-python from source once, portably, cache the wheel, install it (with the
# [server] extras) into the virtual environment, and check that it generates.
#
#   scripts/build_llama_wheel.sh [VENV]        (VENV defaults to .venv)
#
# The wheel cache is $XDG_CACHE_HOME/voxline/wheels (default ~/.cache/voxline/wheels), one
# folder per build key: the version, the machine architecture and every CMake flag, so a wheel
# built with other flags (or the old native build) is never reused. Compiling takes 6-17
# minutes on 2 cores (needs g++, make and cmake; pip fetches cmake if the system has none);
# LLAVA (multimodal) is left out to save time. Set LLAMA_CPP_PYTHON_VERSION to build another
# version; CMAKE_ARGS adds options (e.g. -DGGML_CUDA=on) and is part of the key.
#
# Portable, never native: llama.cpp's default (GGML_NATIVE) compiles for the build machine's
# own CPU, and that wheel dies on another (a general protection fault in libggml-cpu.so on a
# CPU reporting AMX and AVX-512 FP16). llama-cpp-python cannot load llama.cpp's per-CPU
# backends at run time (GGML_BACKEND_DL), so the build names its instruction sets:
#   x86-64: AVX2, FMA, F16C, BMI2 (x86-64-v3: every x86 server since 2015, these machines
#           included); AVX-512 and AMX off, because they are not on every CPU of this kind
#           and AMX kernels crashed where cpuid reported them;
#   other:  the compiler's baseline for the architecture (GGML_NATIVE=OFF).
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
VENV="${1:-.venv}"
PY="$VENV/bin/python"
ARCH="$(uname -m)"

case "$ARCH" in
    x86_64 | amd64)
        PORTABLE="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON"
        PORTABLE+=" -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF"
        PORTABLE+=" -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF"
        PORTABLE+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
        ;;
    *)
        PORTABLE="-DGGML_NATIVE=OFF"
        ;;
esac
FLAGS="$PORTABLE -DLLAVA_BUILD=OFF ${CMAKE_ARGS:-}"
KEY="$VERSION-$ARCH-$(printf '%s' "$FLAGS" | sha256sum | cut -c1-12)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/voxline/wheels/llama-cpp-python-$KEY"
STAMP="$VENV/.llama-cpp-python-build"   # the key of the wheel installed in this venv

# A few tokens from the embedded GGUF, in a child process: a wheel that cannot run on this
# CPU dies here with a plain message, not later in a test with a server log.
smoke_test() {
    local status=0
    "$PY" - <<'EOF' || status=$?
from llama_cpp import Llama

from agent.dialogue.llm_local import embedded_gguf

llm = Llama(model_path=str(embedded_gguf()), n_ctx=256, n_threads=2, verbose=False)
out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
text = out["choices"][0]["text"]
if not text.strip():
    raise SystemExit("llama.cpp generated nothing")
print(f"llama.cpp generates on this CPU: {text.strip()!r}")
EOF
    if [ "$status" -ne 0 ]; then
        echo "error: the llama-cpp-python wheel in $CACHE does not run on this CPU" >&2
        echo "  (exit status $status; above 128 is a signal: 132 illegal instruction, 139 a" >&2
        echo "  segmentation or protection fault). Its flags: $FLAGS" >&2
        echo "  Rebuild with fewer instruction sets, e.g. CMAKE_ARGS='-DGGML_AVX2=OFF" >&2
        echo "  -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF' $0 $VENV" >&2
        echo "  (CMAKE_ARGS is part of the cache key, so this builds a new wheel)." >&2
        exit 1
    fi
}

if [ "$(cat "$STAMP" 2>/dev/null)" = "$KEY" ] \
    && "$PY" -c "import llama_cpp.server, sse_starlette, starlette_context" 2>/dev/null; then
    exit 0  # this build is installed, server extras included (and was checked then)
fi

mkdir -p "$CACHE"
shopt -s nullglob
wheels=("$CACHE"/llama_cpp_python-"$VERSION"-*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    echo "building llama-cpp-python $VERSION (once; cached in $CACHE)" >&2
    echo "  CMake flags: $FLAGS" >&2
    tmp="$(mktemp -d "$CACHE/.build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$PY" -m pip wheel --no-deps --no-cache-dir "llama-cpp-python==$VERSION" -w "$tmp"
    built=("$tmp"/llama_cpp_python-"$VERSION"-*.whl)
    # Atomic: a half-built wheel never appears under its final name.
    mv "${built[0]}" "$CACHE/$(basename "${built[0]}")"
    wheels=("$CACHE"/llama_cpp_python-"$VERSION"-*.whl)
fi
# The cached wheel itself (not whatever the index offers), with the server's extras; forced
# over a wheel of the same version built with other flags.
"$PY" -m pip install -q --force-reinstall --no-deps "${wheels[0]}"
"$PY" -m pip install -q "${wheels[0]}[server]"
smoke_test
echo "$KEY" >"$STAMP"
