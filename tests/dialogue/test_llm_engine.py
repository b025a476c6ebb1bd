"""The LLM engine against a real llama.cpp server running the embedded Qwen2.5 0.5B model.

One server for the whole session (started once: about a second here, plus assembling the GGUF
on first use); greedy decoding and short replies keep each test to a second or two. Deadlines
are generous because the machine may be busy: these tests check behaviour, not speed
(bench/llm.py measures that).

These tests run on uvloop only (the loop the server runs on): the model's time dominates
them, and the same client code runs on both loops in test_llm_errors.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest

from agent.dialogue.llm import (
    Clause,
    LLMConfig,
    LLMDone,
    LLMEngine,
    LLMEvent,
    LLMText,
    LLMToolCall,
    clauses_from,
    make_backend,
)
from agent.dialogue.llm_history import History
from agent.dialogue.llm_local import LlamaServer
from agent.dialogue.llm_tools import ToolConfig, Tools

RECEPTIONIST = (
    "You are the receptionist of Luigi's restaurant, speaking with a caller on the phone. "
    "We are open every evening from 6pm to 11pm. Reply in one short spoken sentence."
)
BOOK = ToolConfig(
    name="book_table",
    description="Book a table at the restaurant",
    parameters={
        "type": "object",
        "properties": {"party_size": {"type": "integer"}, "time": {"type": "string"}},
        "required": ["party_size", "time"],
    },
    builtin="book_table",
)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": True})


@asynccontextmanager
async def engine_for(
    server: LlamaServer, *, tools: Tools | None = None, **overrides: Any
) -> AsyncIterator[LLMEngine]:
    settings: dict[str, Any] = {
        "base_url": server.base_url,
        "system_prompt": RECEPTIONIST,
        "temperature": 0.0,
        "max_tokens": 60,
        "first_token_timeout_s": 60.0,
        "stall_timeout_s": 60.0,
        "tools": (BOOK,) if tools else (),
    }
    config = LLMConfig(**(settings | overrides))
    backend = make_backend(config)
    try:
        yield LLMEngine(config, backend, tools=tools)
    finally:
        await backend.aclose()


def ask(engine: LLMEngine, question: str, history: History | None = None) -> History:
    history = history or engine.config.new_history()
    history.add_user(question)
    return history


@pytest.mark.anyio
async def test_a_reply_streams_in_many_deltas_and_lands_in_history(llama: LlamaServer) -> None:
    with anyio.fail_after(120):
        async with engine_for(llama) as engine:
            history = ask(engine, "Hi, are you open tonight?")
            async with aclosing(engine.respond(history, generation=1)) as stream:
                events = [event async for event in stream]
    deltas = [event for event in events if isinstance(event, LLMText)]
    done = events[-1]
    assert isinstance(done, LLMDone)
    assert len(deltas) > 3
    assert done.finish_reason in ("stop", "length")
    assert done.text == "".join(delta.text for delta in deltas)
    assert "open" in done.text.lower()
    assert history.messages[-1].content == done.text


@pytest.mark.anyio
async def test_replies_reuse_one_connection(llama: LlamaServer) -> None:
    log_mark = len(llama.log)
    with anyio.fail_after(120):
        async with engine_for(llama, max_tokens=8) as engine:
            for question in ("Hello?", "Are you there?"):
                async with aclosing(engine.respond(ask(engine, question), generation=1)) as s:
                    assert isinstance([event async for event in s][-1], LLMDone)
    clients = re.findall(r"(127\.0\.0\.1:\d+) - \"POST", "\n".join(llama.log[log_mark:]))
    assert len(clients) == 2
    assert clients[0] == clients[1]


@pytest.mark.anyio
async def test_clauses_cover_the_reply_in_order(llama: LlamaServer) -> None:
    with anyio.fail_after(120):
        async with engine_for(llama, max_tokens=80) as engine:
            history = ask(
                engine, "Tell me your opening hours, then tell me if I need a reservation."
            )
            stream = clauses_from(engine.respond(history, generation=2), min_clause_chars=8)
            async with aclosing(stream) as items:
                out = [item async for item in items]
    clauses = [item for item in out if isinstance(item, Clause)]
    done = out[-1]
    assert isinstance(done, LLMDone)
    assert clauses
    assert all(done.text[c.start : c.end] == c.text for c in clauses)
    assert "".join(c.text for c in clauses).replace(" ", "") == "".join(done.text.split())


class Bookings:
    def __init__(self) -> None:
        self.made: list[Mapping[str, Any]] = []

    async def book(self, arguments: Mapping[str, Any]) -> str:
        self.made.append(arguments)
        return (
            f"Booked a table for {arguments['party_size']} at {arguments['time']}. "
            "Confirmation number 42."
        )


@pytest.mark.anyio
async def test_the_model_calls_a_tool_and_then_tells_the_caller(llama: LlamaServer) -> None:
    bookings = Bookings()
    tools = Tools([BOOK], builtins={"book_table": bookings.book})
    with anyio.fail_after(120):
        async with engine_for(llama, tools=tools) as engine:
            history = ask(engine, "Please book a table for 4 people at 8pm.")
            stream = clauses_from(engine.respond(history, generation=3))
            async with aclosing(stream) as items:
                out = [item async for item in items]
    assert [(b["party_size"], "8" in b["time"]) for b in bookings.made] == [(4, True)]
    assert any(isinstance(item, LLMToolCall) for item in out)
    spoken = " ".join(item.text for item in out if isinstance(item, Clause))
    assert spoken
    assert "{" not in spoken
    done = out[-1]
    assert isinstance(done, LLMDone)
    assert done.rounds == 2


@pytest.mark.anyio
async def test_cancelling_aborts_on_the_server_and_history_keeps_what_was_heard(
    llama: LlamaServer,
) -> None:
    with anyio.fail_after(120):
        async with engine_for(llama, max_tokens=400) as engine:
            history = ask(engine, "Count from 1 to 100, separated by commas.")
            log_mark = len(llama.log)
            received: list[LLMEvent] = []
            with anyio.CancelScope() as barge_in:
                async for event in engine.respond(history, generation=4):
                    received.append(event)
                    if len(received) == 3:
                        barge_in.cancel()
            wait = functools.partial(
                llama.wait_for_line, "Disconnected from client", after=log_mark, timeout_s=60
            )
            await anyio.to_thread.run_sync(wait)
            generated = history.reply_text()
            assert generated == "".join(e.text for e in received if isinstance(e, LLMText))
            assert history.truncate_last_assistant(generated[:1])
            assert history.render()[-1] == {"role": "assistant", "content": generated[:1] + "…"}

            # The server is free at once for the next turn, which sees the cut reply.
            ask(engine, "Sorry, what time do you close?", history)
            async with aclosing(engine.respond(history, generation=5)) as stream:
                events = [event async for event in stream]
    done = events[-1]
    assert isinstance(done, LLMDone)
    assert done.finish_reason in ("stop", "length")
    assert done.text
