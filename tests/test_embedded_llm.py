"""The embedded LLM (``profile.llm.backend: embedded``): llama.cpp's server as a child of
``voxline serve``, warm before the server is ready, restarted when it dies, stopped with it.

The end-to-end test serves ``configs/assistant.yaml`` as ``make run`` does (a real server, the
real model, a real WebSocket client): a text turn is answered by the model; the model's
process is killed and the server's own notice of the restart is awaited, after which a turn is
answered again; stopping the server leaves no model process behind, and neither does a server
killed outright (the kernel's parent-death signal, seen through a pidfd). The rest needs no
server: config errors name their key, a model that is down gets the engine's fallback, the
tool grammar is one llama.cpp accepts, and the answer tool's call never reaches the caller.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import msgspec
import pytest
import websockets

from agent.config import load_config, parse_config
from agent.config.runtime import llm_config
from agent.dialogue.llm import LLMEngine, LLMFallback
from agent.dialogue.llm_local import EmbeddedLlm
from agent.dialogue.llm_local_tools import ANSWER_TOOL, AnswerFilter, offered_tools, tool_grammar
from pipeline.errors import ConfigError
from tests.server import ROOT, RunningServer, running_server

CONFIG = ROOT / "configs" / "assistant.yaml"
HELLO = json.dumps({"type": "hello", "sample_rate": 16000})


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


async def answer(server: RunningServer, text: str) -> str:
    """The agent's reply to one text turn of a new call (its ``agent.text``, whole)."""
    async with websockets.connect(f"{server.ws}/v1/stream") as ws:
        await ws.send(HELLO)
        greeting: int | None = None
        said: dict[int, str] = {}
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                continue  # the agent's audio
            event = json.loads(message)
            kind = event["type"]
            assert kind != "error", event
            if kind == "agent.text":
                if greeting is None:
                    greeting = event["generation"]
                said[event["generation"]] = said.get(event["generation"], "") + event["delta"]
            elif kind == "audio.end" and event["generation"] == greeting:
                await ws.send(json.dumps({"type": "text", "text": text}))
            elif kind == "audio.end" and event["generation"] in said:
                return said[event["generation"]]


def child_pid(line: str) -> int:
    match = re.search(r"pid (\d+)", line)
    assert match is not None, line
    return int(match.group(1))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_served_assistant_answers_survives_a_killed_model_and_stops_it(
    tmp_path: Path,
) -> None:
    fallback = load_config(CONFIG).dialogue.llm.fallback_text
    # configs/assistant.yaml with the model's deadlines raised, for a written reason: this test
    # is about a killed model coming back, not its speed. On a 2-core machine that other
    # processes keep busy (make test under load), llama.cpp's threads wait for each other at
    # every step and a 0.5B reply passed the 20 s reply deadline (seen: the fallback spoken
    # for the turn after the restart, 2026-12-07). The deadlines' own rule is tested without a
    # server (test_a_model_that_is_down_gets_the_fallback_reply, tests/dialogue/).
    config = tmp_path / "assistant.yaml"
    config.write_bytes(_assistant(reply_timeout_s=300, first_token_timeout_s=120))
    with running_server(str(config), timeout=600) as server:
        with anyio.fail_after(600):
            ready = server.wait_for_log("embedded LLM ready", 1)  # printed before "ready"
            first = child_pid(ready)

            reply = await answer(server, "What time is it?")
            assert reply.strip()
            assert fallback not in reply

            os.kill(first, signal.SIGKILL)
            restarted = await anyio.to_thread.run_sync(
                server.wait_for_log, "embedded LLM restarted", 300
            )
            second = child_pid(restarted)
            assert second != first
            assert gone(first)
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{server.http}/metrics")).text
            assert 'voxline_errors_total{kind="exited",where="embedded_llm"} 1.0' in metrics

            reply = await answer(server, "Hello, who am I talking to?")
            assert reply.strip()
            assert fallback not in reply

            assert await anyio.to_thread.run_sync(server.stop) == 0
    assert gone(second)  # stopped and reaped by the server, not orphaned


def _assistant(**llm: object) -> bytes:
    """configs/assistant.yaml with ``profile.llm`` keys replaced (as YAML flow values)."""
    text = CONFIG.read_text()
    for key, value in llm.items():
        line = re.compile(rf"^    {key}: .*$", re.MULTILINE)
        new = f"    {key}: {json.dumps(value)}"
        text = (
            line.sub(new, text)
            if line.search(text)
            else text.replace("  llm:\n", f"  llm:\n{new}\n", 1)
        )
    return text.encode()


@pytest.mark.parametrize(
    ("keys", "where", "reason"),
    [
        ({"backend": "llama"}, "$.profile.llm.backend", "Invalid enum value 'llama'"),
        ({"threads": 0}, "$.profile.llm.threads", ">= 1"),
        ({"context_tokens": 100}, "$.profile.llm.context_tokens", ">= 512"),
        ({"chat_format": "Not A Format"}, "$.profile.llm.chat_format", "matching regex"),
        ({"tool_grammar": "yes"}, "$.profile.llm.tool_grammar", "Expected `bool`"),
        ({"threds": 2}, "$.profile.llm.threds", "unknown field"),
        (
            {"backend": "openai", "model_path": "model.gguf"},
            "$.profile.llm.model_path",
            "only the embedded backend",
        ),
    ],
)
def test_a_bad_embedded_setting_names_its_key(
    keys: dict[str, object], where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_assistant(**keys), ".yaml")
    assert info.value.path == where
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("keys", "where", "reason"),
    [
        ({"model_path": "no/such/model.gguf"}, "$.profile.llm.model_path", "no such file"),
        ({"chat_format": "no-such-format"}, "$.profile.llm.chat_format", "no chat format"),
    ],
)
def test_a_model_file_or_chat_format_llama_cpp_lacks_is_refused_at_start_up(
    keys: dict[str, object], where: str, reason: str
) -> None:
    config = parse_config(_assistant(**keys), ".yaml")
    with pytest.raises(ConfigError) as info:
        EmbeddedLlm.from_config(config)
    assert info.value.path == where
    assert reason in info.value.reason


def test_the_assistant_runs_on_the_openai_engine_path_with_its_tools() -> None:
    config = load_config(CONFIG)
    settings = llm_config(config)
    assert config.profile.llm is not None
    assert config.profile.llm.backend == "embedded"
    assert settings.backend == "openai"
    assert [tool.name for tool in settings.tools] == list(config.dialogue.llm.tools)


@pytest.mark.anyio
async def test_a_model_that_is_down_gets_the_fallback_reply() -> None:
    config = load_config(CONFIG)
    settings = msgspec.structs.replace(llm_config(config), tools=())
    down = EmbeddedLlm(Path("never-started.gguf"), name="x")  # not started, or restarting
    engine = LLMEngine(settings, down)
    history = settings.new_history()
    history.add_user("Hello?")
    with anyio.fail_after(10):
        events = [event async for event in engine.respond(history, generation=1)]
    fallbacks = [event for event in events if isinstance(event, LLMFallback)]
    assert [(f.text, f.reason) for f in fallbacks] == [(settings.fallback_text, "error")]
    assert "restarting" in fallbacks[0].detail


@pytest.mark.anyio
async def test_the_model_starts_whatever_the_servers_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """llama.cpp's server reads its settings from variables of the same names too: a server
    run with ``PORT``, ``MODEL`` or ``CACHE`` set (a container's, a CI job's) must not pass them
    on (one of them once broke a test run: "CACHE=/tmp/..." is no boolean)."""
    for name, value in {"CACHE": "/tmp/not-a-bool", "PORT": "1", "MODEL": "/nowhere.gguf"}.items():
        monkeypatch.setenv(name, value)
    embedded = await anyio.to_thread.run_sync(EmbeddedLlm.from_config, load_config(CONFIG))
    with anyio.fail_after(180):
        try:
            await embedded.start()
            assert embedded.pid is not None
        finally:
            await embedded.aclose()


def test_the_tool_grammar_is_one_llama_cpp_accepts() -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    config = load_config(CONFIG)
    schemas = [tool.schema() for tool in llm_config(config).tools]
    for offered in (schemas, offered_tools(schemas)):
        grammar = tool_grammar(offered)
        LlamaGrammar.from_string(grammar, verbose=False)
        for name in ("lookup_order", "current_datetime", "transfer", "end_call"):
            assert f'\\"name\\": \\"{name}\\"' in grammar
        assert ("answer-call" in grammar) == (ANSWER_TOOL in offered)
    with pytest.raises(ValueError, match="at least one tool"):
        tool_grammar([])


@pytest.mark.parametrize("pieces", [1, 3, 1000])
def test_the_answer_tools_call_is_taken_out_of_the_reply_however_it_is_split(pieces: int) -> None:
    def through(text: str) -> str:
        answer = AnswerFilter()
        size = max(1, len(text) // pieces)
        out = "".join(answer.feed(text[i : i + size]) for i in range(0, len(text), size))
        return out + answer.finish()

    call = '{"name": "answer_in_words", "arguments": {}}'
    assert through(f"{call}\nHello! How can I help?") == "Hello! How can I help?"
    assert through(f"<tool_call>\n{call}\n</tool_call>\nHi.") == "Hi."
    other = '{"name": "end_call", "arguments": {}}'
    assert through(other) == other  # a real call goes on to the engine as text
    assert through("It is noon.") == "It is noon."
    assert through('{"name": "answer_in') == '{"name": "answer_in'  # cut short: kept


@pytest.mark.slow
def test_a_killed_server_takes_its_model_process_with_it() -> None:
    """SIGKILL leaves the server no time to stop its child: the kernel tells the child
    (``die_with_parent``), which exits; its exit is awaited through a pidfd, no polling."""
    script = (
        "import os, sys\n"
        "from agent.dialogue.llm_local import LlamaServer, embedded_gguf\n"
        "server = LlamaServer(embedded_gguf(), die_with_parent=True)\n"
        "server.start()\n"
        "print(server.pid, os.getpid(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        ["timeout", "300", sys.executable, "-c", script],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert parent.stdout is not None
        pid, python = map(int, parent.stdout.readline().split())
        exited = os.pidfd_open(pid)
        try:
            os.kill(python, signal.SIGKILL)  # the server only (not its process group)
            parent.wait(timeout=30)  # `timeout`, once the Python under it is gone
            readable, _, _ = select.select([exited], [], [], 60)
            assert readable == [exited], f"the model process {pid} outlived its server"
        finally:
            os.close(exited)
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left: an orphan too
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
        for pipe in (parent.stdin, parent.stdout):
            if pipe is not None:
                pipe.close()
