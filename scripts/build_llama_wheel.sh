#!/usr/bin/env bash
# Build llama-cpp-python from source once, cache the wheel, and install it (with the [server]
# extras) into the virtual environment. Later runs reuse the cached wheel (seconds).
#
#   scripts/build_llama_wheel.sh [VENV]        (VENV defaults to .venv)
#
# The wheel cache is $XDG_CACHE_HOME/voxline/wheels (default ~/.cache/voxline/wheels).
# Compiling takes 6-17 minutes on 2 cores (needs g++, make and cmake; pip fetches cmake if the
# system has none); LLAVA (multimodal) is left out to save time. Set LLAMA_CPP_PYTHON_VERSION
# to build another version; CMAKE_ARGS passes more options (e.g. -DGGML_CUDA=on).
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
VENV="${1:-.venv}"
PY="$VENV/bin/python"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/voxline/wheels"
mkdir -p "$CACHE"

if "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$VERSION')" 2>/dev/null \
    && "$PY" -c "import llama_cpp.server, sse_starlette, starlette_context" 2>/dev/null; then
    exit 0  # already installed, server extras included
fi

shopt -s nullglob
wheels=("$CACHE"/llama_cpp_python-"$VERSION"-*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    echo "building llama-cpp-python $VERSION (once; cached in $CACHE)" >&2
    tmp="$(mktemp -d "$CACHE/.build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$PY" -m pip wheel --no-deps --no-cache-dir "llama-cpp-python==$VERSION" -w "$tmp"
    built=("$tmp"/llama_cpp_python-"$VERSION"-*.whl)
    # Atomic: a half-built wheel never appears under its final name.
    mv "${built[0]}" "$CACHE/$(basename "${built[0]}")"
    wheels=("$CACHE"/llama_cpp_python-"$VERSION"-*.whl)
fi
# The cached wheel itself (not whatever the index offers), with the server's extras.
"$PY" -m pip install -q "${wheels[0]}[server]"
