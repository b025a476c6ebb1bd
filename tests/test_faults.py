"""Faults a real call survives: an LLM server that stalls mid-stream or sends garbage, a circuit
breaker that opens on it, and a Piper worker that hangs in the middle of a reply.

Each test runs a real ``voxline serve`` (:mod:`agent.server_process`) whose LLM is a scripted
HTTP server in the test (:mod:`tests.llm_server`: real sockets, every byte chosen), and talks
to it as a client does: typed turns on the native WebSocket, one response on ``/v1/realtime``.
A hang is real: the Piper worker process is stopped with ``SIGSTOP``. Nothing sleeps: the
tests wait for events; the only short deadline is the LLM's stall timeout, the behaviour under
test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets
import yaml  # type: ignore[import-untyped]  # no stubs installed
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import Metrics
from pipeline.breaker import Breaker
from tests.llm_server import Connection, Handler, chunk, reply, scripted_server
from tests.server import RunningServer, running_server
from tests.test_server import RATE, Call
from voices.piper_engine import PiperEngine

pytestmark = pytest.mark.anyio

FALLBACK = "Sorry, one moment please."


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


def agent_file(folder: Path, base_url: str, **llm: Any) -> str:
    """An LLM agent answered by the server at ``base_url``; ``llm``: more ``profile.llm``."""
    config = {
        "name": "faults",
        "profile": {
            "tts": {"engine": "piper", "cache_mb": 0},  # every reply goes to the worker
            "llm": {
                "base_url": base_url,
                "model": "scripted",
                "first_token_timeout_s": 30,
                "stall_timeout_s": 30,
                "breaker_cooldown_s": 3600,
                **llm,
            },
        },
        "greeting": {"text": "Hello."},
        "turns": {"idle_timeout_ms": 0},  # no idle prompt between the typed turns
        "dialogue": {"engine": "llm", "llm": {"fallback_text": FALLBACK}},
    }
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


async def stall_after_two_tokens(connection: Connection) -> None:
    await connection.send_head()
    await connection.send_event(chunk("Hello"))
    await connection.send_event(chunk(" there,"))
    await connection.wait_closed()  # stalls until Voxline gives up on it


async def garbage(connection: Connection) -> None:
    await connection.send_head()
    await connection.send(b"data: this is not JSON\n\n")
    await connection.wait_closed()


async def http_500(connection: Connection) -> None:
    await connection.send_head(500, "application/json")
    await connection.send(b'{"error": "out of memory"}')
    await connection.end()


class Client(Call):
    """A native call that says typed turns and keeps each reply's text and errors."""

    async def turn(self, text: str) -> int:
        """Say ``text``; the generation of the reply once its audio has ended."""
        await self.ws.send(json.dumps({"type": "text", "text": text}))
        end = await self.receive_until(lambda e: e["type"] == "audio.end")
        generation: int = end["generation"]
        return generation

    def said(self, generation: int) -> str:
        return "".join(
            e["delta"]
            for e in self.events
            if e["type"] == "agent.text" and e["generation"] == generation
        )

    def errors(self) -> list[str]:
        return [e["code"] for e in self.events if e["type"] == "error"]


def metric(server: RunningServer, name: str, **labels: str) -> float:
    """One sample of the server's ``/metrics`` (0 when it is not there)."""
    text = httpx.get(f"{server.http}/metrics", timeout=10).text
    for line in text.splitlines():
        sample = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if sample is None or sample.group(1) != name:
            continue
        if dict(re.findall(r'(\w+)="([^"]*)"', sample.group(2) or "")) == labels:
            return float(sample.group(3))
    return 0.0


def test_restarts_timeouts_and_breakers_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    llm = Breaker("llm", failures=1, cooldown_s=60.0)
    llm.failed(0.0)
    llm.admit(1.0)  # refused: it is open
    piper = PiperEngine()  # never started: its statistics are there all the same
    metrics.watch(sessions=lambda: (0, 1), executors=lambda: [piper.statistics()])
    metrics.watch_breaker(llm)
    text = metrics.exposition().decode()
    piper.close()
    got = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert got[("voxline_executor_restarts_total", (("executor", "piper"),))] == 0
    assert got[("voxline_executor_timeouts_total", (("executor", "piper"),))] == 0
    assert got[("voxline_breaker_state", (("breaker", "piper"),))] == 0
    assert got[("voxline_breaker_state", (("breaker", "llm"),))] == 2
    assert got[("voxline_breaker_opened_total", (("breaker", "llm"),))] == 1
    assert got[("voxline_breaker_refused_total", (("breaker", "llm"),))] == 1


@pytest.mark.slow
async def test_an_llm_that_stalls_or_sends_garbage_gets_the_fallback_and_opens_the_breaker(
    tmp_path: Path,
) -> None:
    handlers: list[Handler] = [
        stall_after_two_tokens,
        reply("Yes, we are open until nine."),
        garbage,
        http_500,
    ]
    with anyio.fail_after(240):
        async with scripted_server(handlers) as llm:
            path = agent_file(tmp_path, llm.base_url, stall_timeout_s=0.5, breaker_failures=2)
            with running_server(path) as server:
                async with websockets.connect(f"{server.ws}/v1/stream") as ws:
                    call = Client(ws)
                    await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
                    await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting

                    stalled = await call.turn("Are you open today?")
                    assert call.said(stalled) == f"Hello there, {FALLBACK}"
                    assert len(call.audio[stalled]) > RATE  # spoken aloud
                    assert call.errors() == ["reply_failed"]

                    answered = await call.turn("And tonight?")  # the call goes on
                    assert call.said(answered) == "Yes, we are open until nine."
                    assert call.errors() == ["reply_failed"]

                    for question in ("Hello?", "Are you there?"):  # two failures in a row
                        failed = await call.turn(question)
                        assert call.said(failed) == FALLBACK
                    assert len(llm.requests) == 4

                    refused = await call.turn("Anyone?")  # the breaker is open
                    assert call.said(refused) == FALLBACK
                    assert call.errors() == ["reply_failed"] * 4

                async with websockets.connect(f"{server.ws}/v1/realtime", max_size=None) as rt:
                    await rt.send(json.dumps(user_text("Still there?")))
                    await rt.send(json.dumps({"type": "response.create"}))
                    done = await realtime_event(rt, "response.done")
                assert len(llm.requests) == 4  # neither asked the LLM server
                status = done["response"]["status_details"]
                assert done["response"]["status"] == "failed"
                assert status["error"]["code"] == "reply_failed"
                assert "unavailable" in status["error"]["message"]

                assert metric(server, "voxline_breaker_state", breaker="llm") == 2
                llm_errors = {
                    kind: metric(server, "voxline_errors_total", kind=kind, where="llm")
                    for kind in ("error", "unavailable")
                }
                assert llm_errors == {"error": 3, "unavailable": 2}


def user_text(text: str) -> dict[str, Any]:
    content = [{"type": "input_text", "text": text}]
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": content},
    }


async def realtime_event(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await ws.recv())
        if event["type"] == kind:
            return event


def piper_workers(server: RunningServer) -> list[int]:
    """The live Piper worker processes of ``server`` (its children running the worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes()
            parent = re.search(r"^PPid:\s+(\d+)$", status, re.MULTILINE)
            state = re.search(r"^State:\s+(\S)", status, re.MULTILINE)
            if parent is None or state is None or state.group(1) == "Z":
                continue
            if int(parent.group(1)) == server.process.pid and b"voices.piper_worker" in command:
                found.append(int(entry.name))
    return found


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """``pid`` frozen (``SIGSTOP``): a real hang; killed at the end if it is still there."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
async def test_a_piper_worker_that_hangs_mid_reply_is_restarted_and_the_call_goes_on(
    tmp_path: Path,
) -> None:
    go_on = anyio.Event()

    async def two_parts(connection: Connection) -> None:
        await connection.send_head()
        await connection.send_event(chunk("Let me look that up for you. We"))  # a whole clause
        await go_on.wait()  # the rest once the worker is frozen
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await connection.send_event(chunk(" open at nine and close at six on weekdays."))
            await connection.send_event(chunk(finish="stop"))
            await connection.send_event("[DONE]")
            await connection.end()

    handlers: list[Handler] = [two_parts, reply("Yes, on Saturdays from ten to four.")]
    with anyio.fail_after(240):
        async with scripted_server(handlers) as llm:
            with running_server(agent_file(tmp_path, llm.base_url)) as server:
                [worker] = piper_workers(server)
                async with websockets.connect(f"{server.ws}/v1/stream") as ws:
                    call = Client(ws)
                    await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
                    await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
                    await ws.send(json.dumps({"type": "text", "text": "When are you open?"}))
                    started = await call.receive_until(lambda e: e["type"] == "audio.start")
                    with stopped(worker):  # the reply's first sentence is playing
                        go_on.set()
                        end = await call.receive_until(lambda e: e["type"] == "audio.end")
                    hung = started["generation"]
                    assert end["generation"] == hung
                    assert call.errors() == ["reply_failed"]  # told, and the call goes on
                    assert call.said(hung).startswith("Let me look that up for you.")
                    assert len(call.audio[hung]) > RATE  # what could be said was heard

                    answered = await call.turn("Are you open on Saturday?")
                    assert call.said(answered) == "Yes, on Saturdays from ten to four."
                    assert len(call.audio[answered]) > RATE
                    assert call.errors() == ["reply_failed"]
                [restarted] = piper_workers(server)
                assert restarted != worker
                assert metric(server, "voxline_executor_timeouts_total", executor="piper") == 1
                assert metric(server, "voxline_executor_restarts_total", executor="piper") == 1
                assert metric(server, "voxline_breaker_state", breaker="piper") == 0
