"""Shared fixtures: anyio on asyncio and asyncio+uvloop, and a check that no task leaks."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agent import call_loop
from pipeline.asr.decoder import Decoded, DecodeRequest, WhisperDecoder
from pipeline.asr.stage import asr_executor
from pipeline.executor import ModelExecutor
from pipeline.vad import SileroVad, VadRequest, VadResult, vad_executor
from voices.piper_engine import PiperEngine


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


def pytest_configure(config: pytest.Config) -> None:
    """The servers the tests start (in process and as children) keep their call records in a
    data directory of this run's own, never in the user's (``records.url`` left at its
    default: :func:`agent.records.store.default_url`)."""
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="voxline-test-data-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ["XDG_DATA_HOME"], ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every anyio test gets the leaked-task check."""
    for item in items:
        if (
            isinstance(item, pytest.Function)
            and item.get_closest_marker("anyio") is not None
            and inspect.iscoroutinefunction(item.function)
        ):
            item.fixturenames.insert(0, "no_leaked_tasks")


@pytest.fixture(autouse=True)
def own_call_watchers() -> Iterator[None]:
    """Each test leaves the process's call watchers (:data:`agent.call_loop.WATCHERS`) as it
    found them. A server made in this process installs process-wide ones for good
    (:func:`agent.tracing_logs.install`: a server process has one app), and a later test's
    stand-in sessions must not meet them: CI (2026-12-07) had tracing_logs' watcher, left by
    an in-process server, fail every call of test_sip_call's ``QuietSession``."""
    before = list(call_loop.WATCHERS)
    yield
    call_loop.WATCHERS[:] = before


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail an async test that leaves a task running on the loop."""
    before = asyncio.all_tasks()
    yield
    leaked = {
        task
        for task in asyncio.all_tasks() - before
        if not task.done() and not _is_test_runner(task)
    }
    assert not leaked, f"tasks left running: {[t.get_name() for t in leaked]}"


def _is_test_runner(task: asyncio.Task[Any]) -> bool:
    """anyio's pytest plugin runs fixtures and tests in tasks of its own."""
    return "TestRunner" in getattr(task.get_coro(), "__qualname__", "")


# -- real models, loaded once per test run and shared ------------------------------------------


@pytest.fixture(scope="session")
def vad_runner() -> Iterator[ModelExecutor[VadRequest, VadResult]]:
    """The packaged silero VAD on its shared batching executor."""
    with vad_executor(SileroVad()) as executor:
        yield executor


@pytest.fixture(scope="session")
def whisper_decoder() -> WhisperDecoder:
    """The embedded Whisper base (int8, 2 threads), assembled in the user's cache if needed."""
    return WhisperDecoder.load()


@pytest.fixture(scope="session")
def asr_runner(whisper_decoder: WhisperDecoder) -> Iterator[ModelExecutor[DecodeRequest, Decoded]]:
    with asr_executor(whisper_decoder) as executor:
        yield executor


@pytest.fixture(scope="session")
def tts_engine() -> Iterator[PiperEngine]:
    """The embedded Piper voice in its worker process."""
    with PiperEngine(threads=1) as engine:
        yield engine
