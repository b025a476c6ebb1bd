#!/usr/bin/env bash
# Regenerate the hashed locks in requirements/ (`make lock`; see requirements/README.md).
#
#   UV=path/to/uv PYTHON=python3 NO_DEPS="..." NO_DEPS_TEST="..." LLM_WHEELS="..." \
#       requirements/lock.sh
#
# uv resolves for this interpreter's Python and platform (CPython 3.11 on Linux x86-64: the
# machines that run `make run` and `make test`, and the CPU image; gpu.lock names its own)
# from the indexes pip is configured with here (pip's own index, its extra indexes and
# find-links, and its global constraint file), so the locks pin what `pip install` would
# pick; `--index-strategy unsafe-best-match` is pip's rule (the best version across every
# index), not uv's default (the first index that has the name).
# The locks name no index: pip installs them from whatever indexes it is configured with, and
# the hashes make sure it gets the same files.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${UV:?UV names the uv binary}" "${NO_DEPS:?}" "${NO_DEPS_TEST:?}" "${LLM_WHEELS:?}"
PYTHON="${PYTHON:-python3}"

pip_setting() {  # pip's setting $1 (e.g. extra-index-url) from its environment or its config
    local env="PIP_$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')"
    if [ -n "${!env:-}" ]; then printf '%s\n' "${!env}"; return; fi
    "$PYTHON" -m pip config get "global.$1" 2>/dev/null || true
}

options=(--generate-hashes --index-strategy unsafe-best-match --custom-compile-command "make lock"
    --python "$PYTHON" --quiet)
for url in $(pip_setting index-url); do options+=(--index-url "$url"); done
for url in $(pip_setting extra-index-url); do options+=(--extra-index-url "$url"); done
for dir in $(pip_setting find-links); do options+=(--find-links "$dir"); done
for file in $(pip_setting constraint); do [ -f "$file" ] && options+=(--constraint "$file"); done

compile() {  # compile OUTPUT [uv pip compile arguments...]
    local out="$1"
    shift
    "$UV" pip compile "${options[@]}" --output-file "$out" "$@"
}

# The test environment is the superset: every other lock is held to its versions, so a venv
# set up by `make setup` and then `make setup-test` never changes a version on the way.
compile requirements/test.lock pyproject.toml requirements/llm.in --extra test --extra tracing
compile requirements/server.lock pyproject.toml --constraint requirements/test.lock
printf '%s\n' $LLM_WHEELS | compile requirements/llm.lock pyproject.toml requirements/llm.in - \
    --constraint requirements/test.lock
compile requirements/build.lock requirements/build.in --constraint requirements/test.lock
compile requirements/tools.lock requirements/tools.in  # the tools' own venv
# The deployment's checkers (make setup-deploy-tools), each in its own venv: docker-compose's
# old pins fit nothing else; the tools that build its source distributions are held to the
# setuptools its lock pins.
compile requirements/deploy-tools.lock requirements/deploy-tools.in
compile requirements/compose.lock requirements/compose.in
compile requirements/compose-build.lock requirements/compose-build.in \
    --constraint requirements/compose.lock
# The GPU image (Dockerfile.gpu): another interpreter and platform, CPython 3.12 on Ubuntu
# 24.04 (glibc 2.39), and its own versions (requirements/gpu.in says why). uv reads the wheels'
# metadata only: nothing of torch's or vllm's gigabytes is downloaded.
compile requirements/gpu.lock pyproject.toml requirements/gpu.in --extra gpu \
    --python-version 3.12 --python-platform x86_64-manylinux_2_39
# The wheels installed without their dependencies (see NO_DEPS in the Makefile): pinned there,
# hashed here.
printf '%s\n' $NO_DEPS | compile requirements/no-deps.lock - --no-deps
printf '%s\n' $NO_DEPS_TEST | compile requirements/no-deps-test.lock - --no-deps
