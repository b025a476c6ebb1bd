"""The LLM engine against real local HTTP servers that misbehave on purpose.

Each server is a :class:`~tests.llm_server.ScriptedServer`: a raw-socket HTTP/1.1 server on a
free port whose handlers stall, send malformed events, close mid-stream, or stream tool calls
with bad arguments. Stalls last until the client hangs up, so every outcome is decided by the
engine's own deadlines, never by how fast this machine is.
"""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import pytest

from agent.dialogue.llm import (
    Clause,
    LLMConfig,
    LLMDone,
    LLMEngine,
    LLMEvent,
    LLMFallback,
    LLMText,
    LLMToolCall,
    LLMToolResult,
    clauses_from,
    make_backend,
)
from agent.dialogue.llm_history import History
from agent.dialogue.llm_stream import Usage
from agent.dialogue.llm_tools import ToolConfig, ToolResult, Tools
from agent.metrics import METRICS
from pipeline.breaker import BreakerState
from pipeline.errors import ModelError
from tests.llm_server import Connection, Handler, chunk, reply, scripted_server

FALLBACK = "Sorry, one moment please."
BOOK = ToolConfig(
    name="book_table",
    parameters={
        "type": "object",
        "properties": {"party_size": {"type": "integer"}},
        "required": ["party_size"],
    },
    builtin="book",
)
HANG_UP = ToolConfig(name="hang_up", builtin="hang_up")


class Bookings:
    def __init__(self) -> None:
        self.made: list[Mapping[str, Any]] = []

    async def book(self, arguments: Mapping[str, Any]) -> str:
        self.made.append(arguments)
        return f"Booked for {arguments['party_size']}."

    async def hang_up(self, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult(content="Call ended.", final=True)

    def tools(self) -> Tools:
        return Tools([BOOK, HANG_UP], builtins={"book": self.book, "hang_up": self.hang_up})


@asynccontextmanager
async def engine_at(
    base_url: str, *, tools: Tools | None = None, **overrides: Any
) -> AsyncIterator[LLMEngine]:
    settings: dict[str, Any] = {
        "base_url": base_url,
        "fallback_text": FALLBACK,
        "first_token_timeout_s": 0.5,
        "stall_timeout_s": 0.5,
        "tools": (BOOK, HANG_UP) if tools else (),
    }
    config = LLMConfig(**(settings | overrides))
    backend = make_backend(config)
    try:
        yield LLMEngine(config, backend, tools=tools)
    finally:
        await backend.aclose()


def asked(question: str = "Can I book a table?") -> History:
    history = History("Be brief.")
    history.add_user(question)
    return history


async def collect(engine: LLMEngine, history: History) -> list[LLMEvent]:
    async with aclosing(engine.respond(history, generation=7)) as events:
        return [event async for event in events]


async def run_against(handlers: list[Handler], **overrides: Any) -> tuple[list[LLMEvent], History]:
    history = asked()
    with anyio.fail_after(20):
        async with (
            scripted_server(handlers) as server,
            engine_at(server.base_url, **overrides) as engine,
        ):
            events = await collect(engine, history)
    return events, history


def texts(events: list[LLMEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, LLMText))


def done(events: list[LLMEvent]) -> LLMDone:
    assert isinstance(events[-1], LLMDone)
    return events[-1]


async def stall_before_headers(connection: Connection) -> None:
    await connection.wait_closed()


async def stall_after_role(connection: Connection) -> None:
    await connection.send_head()
    await connection.send_event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    await connection.wait_closed()


async def stall_mid_reply(connection: Connection) -> None:
    await connection.send_head()
    await connection.send_event(chunk("Hello there, "))
    await connection.wait_closed()


async def malformed(connection: Connection) -> None:
    await connection.send_head()
    await connection.send(b'data: {"choices": [{"delta": {"content": "Hi"\n\n')
    await connection.end()


async def close_mid_reply(connection: Connection) -> None:
    await connection.send_head()
    await connection.send_event(chunk("We are open "))
    # returning closes the socket inside a chunked body


async def end_without_finish(connection: Connection) -> None:
    await connection.send_head()
    await connection.send_event(chunk("We are open"))
    await connection.end()


async def not_http(connection: Connection) -> None:
    await connection.stream.send(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")


async def http_500(connection: Connection) -> None:
    await connection.send_head(500, "application/json")
    await connection.send(b'{"error": "model not loaded"}')
    await connection.end()


@pytest.mark.anyio
async def test_a_server_that_is_down_gets_the_fallback_spoken() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    history = asked()
    with anyio.fail_after(10):
        async with engine_at(f"http://127.0.0.1:{port}/v1") as engine:
            events = await collect(engine, history)
    fallback, end = events
    assert isinstance(fallback, LLMFallback)
    assert (fallback.generation, fallback.text, fallback.reason) == (7, FALLBACK, "error")
    assert "unreachable" in fallback.detail
    assert isinstance(end, LLMDone)
    assert (end.finish_reason, end.text) == ("error", FALLBACK)
    assert history.messages[-1].content == FALLBACK


@pytest.mark.anyio
@pytest.mark.parametrize("handler", [stall_before_headers, stall_after_role])
async def test_no_first_token_in_time_speaks_the_fallback_and_aborts(handler: Handler) -> None:
    history = asked()
    with anyio.fail_after(20):
        async with scripted_server([handler]) as server, engine_at(server.base_url) as engine:
            events = await collect(engine, history)
            await server.client_left.wait()
    assert [type(e) for e in events] == [LLMFallback, LLMDone]
    assert events[0] == LLMFallback(generation=7, text=FALLBACK, reason="first_token_timeout")
    assert done(events).finish_reason == "first_token_timeout"
    assert [m.content for m in history.messages] == ["Can I book a table?", FALLBACK]


@pytest.mark.anyio
async def test_a_stall_mid_reply_ends_it_with_what_was_said_then_the_fallback() -> None:
    history = asked()
    with anyio.fail_after(20):
        async with (
            scripted_server([stall_mid_reply]) as server,
            engine_at(server.base_url) as engine,
        ):
            events = await collect(engine, history)
            await server.client_left.wait()
    assert texts(events) == "Hello there, "
    fallback = events[-2]
    assert isinstance(fallback, LLMFallback)
    assert (fallback.reason, fallback.text) == ("error", FALLBACK)
    assert "stalled" in fallback.detail
    whole = f"Hello there, {FALLBACK}"
    assert (done(events).finish_reason, done(events).text) == ("error", whole)
    assert [m.content for m in history.messages[-2:]] == ["Hello there, ", FALLBACK]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("handler", "detail"),
    [
        (malformed, "malformed chunk"),
        (not_http, "LLM stream broken"),
        (http_500, 'HTTP 500: {"error": "model not loaded"}'),
    ],
)
async def test_a_broken_response_before_any_text_speaks_the_fallback(
    handler: Handler, detail: str
) -> None:
    events, _ = await run_against([handler])
    fallback = events[0]
    assert isinstance(fallback, LLMFallback)
    assert fallback.reason == "error"
    assert detail in fallback.detail
    assert done(events).finish_reason == "error"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("handler", "text"),
    [(close_mid_reply, "We are open "), (end_without_finish, "We are open")],
)
async def test_a_stream_cut_short_after_some_text_ends_the_reply_with_it_and_the_fallback(
    handler: Handler, text: str
) -> None:
    events, history = await run_against([handler])
    assert texts(events) == text
    assert [type(e) for e in events[-2:]] == [LLMFallback, LLMDone]
    assert done(events).finish_reason == "error"
    assert history.reply_text() == f"{text.rstrip()} {FALLBACK}"


@pytest.mark.anyio
async def test_cancelling_the_reply_closes_the_connection_and_keeps_what_was_generated() -> None:
    history = asked()
    received: list[LLMEvent] = []
    with anyio.fail_after(20):
        async with (
            scripted_server([stall_mid_reply]) as server,
            engine_at(server.base_url, first_token_timeout_s=30, stall_timeout_s=30) as engine,
        ):
            with anyio.CancelScope() as generation_scope:  # what a barge-in cancels
                async for event in engine.respond(history, generation=7):
                    received.append(event)
                    generation_scope.cancel()
            await server.client_left.wait()
    assert received == [LLMText(generation=7, text="Hello there, ")]
    assert history.reply_text() == "Hello there, "
    assert history.truncate_last_assistant("Hello")
    assert history.render()[-1] == {"role": "assistant", "content": "Hello…"}


def tool_call_reply(name: str, arguments: str, *, call_id: str = "call_9") -> Handler:
    async def handle(connection: Connection) -> None:
        fragments = [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": name}},
            {"index": 0, "function": {"arguments": arguments[:5]}},
            {"index": 0, "function": {"arguments": arguments[5:]}},
        ]
        await connection.send_head()
        await connection.send_event(chunk("One moment."))
        for fragment in fragments:
            await connection.send_event(chunk(tool_calls=[fragment]))
        await connection.send_event(chunk(finish="tool_calls"))
        await connection.send_event("[DONE]")
        await connection.end()

    return handle


@pytest.mark.anyio
async def test_invalid_tool_arguments_go_back_to_the_model_and_the_tool_is_not_run() -> None:
    bookings = Bookings()
    handlers = [tool_call_reply("book_table", '{"party_size": "four"}'), reply("For how many?")]
    history = asked()
    with anyio.fail_after(20):
        async with (
            scripted_server(handlers) as server,
            engine_at(server.base_url, tools=bookings.tools()) as engine,
        ):
            events = await collect(engine, history)
    assert bookings.made == []
    result = next(e for e in events if isinstance(e, LLMToolResult))
    why = 'arguments.party_size must be integer, not "four"'
    assert result.result == ToolResult(
        content=f"invalid arguments for book_table: {why}", error=True
    )
    assert texts(events) == "One moment. For how many?"
    assert (done(events).finish_reason, done(events).rounds) == ("stop", 2)
    second = server.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"] == {
        "name": "book_table",
        "arguments": '{"party_size": "four"}',
    }
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": "call_9",
        "name": "book_table",
        "content": result.result.content,
    }


@pytest.mark.anyio
async def test_a_text_tool_call_with_broken_json_is_never_spoken() -> None:
    bookings = Bookings()
    handlers = [
        reply('<tool_call>{"name": "book_table", "arguments": {"party_size": </tool_call>'),
        reply("How many people?"),
    ]
    history = asked()
    with anyio.fail_after(20):
        async with (
            scripted_server(handlers) as server,
            engine_at(server.base_url, tools=bookings.tools()) as engine,
        ):
            events = await collect(engine, history)
    assert texts(events) == "How many people?"
    call = next(e for e in events if isinstance(e, LLMToolCall)).call
    assert (call.name, call.as_text) == ("book_table", True)
    note = server.requests[1]["messages"][-1]
    assert note["role"] == "system"
    assert note["content"].startswith("Result of the book_table tool: invalid arguments")
    assert bookings.made == []


@pytest.mark.anyio
async def test_after_max_tool_rounds_the_model_gets_no_tools() -> None:
    bookings = Bookings()
    handlers = [
        tool_call_reply("book_table", '{"party_size": 2}', call_id="a"),
        tool_call_reply("book_table", '{"party_size": 3}', call_id="b"),
        reply("Booked twice."),
    ]
    history = asked()
    with anyio.fail_after(20):
        async with (
            scripted_server(handlers) as server,
            engine_at(server.base_url, tools=bookings.tools(), max_tool_rounds=2) as engine,
        ):
            events = await collect(engine, history)
    assert ["tools" in request for request in server.requests] == [True, True, False]
    assert bookings.made == [{"party_size": 2}, {"party_size": 3}]
    assert texts(events) == "One moment. One moment. Booked twice."
    assert done(events).rounds == 3


@pytest.mark.anyio
async def test_a_final_tool_ends_the_reply() -> None:
    events, history = await run_against(
        [tool_call_reply("hang_up", "{}")], tools=Bookings().tools()
    )
    assert [type(e) for e in events] == [LLMText, LLMToolCall, LLMToolResult, LLMDone]
    assert done(events).finish_reason == "tool_final"
    assert history.messages[-1].content == "Call ended."


@pytest.mark.anyio
async def test_clauses_reach_tts_before_the_reply_is_complete() -> None:
    more = anyio.Event()

    async def two_sentences(connection: Connection) -> None:
        await connection.send_head()
        for piece in ["Sure", ", I can help", " with that. ", "What"]:
            await connection.send_event(chunk(piece))
        await more.wait()  # the rest comes only once the first clause was handed over
        await connection.send_event(chunk(" day suits you?"))
        await connection.send_event(chunk(finish="stop"))
        usage = {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 9}}
        await connection.send_event(usage)
        await connection.send_event("[DONE]")
        await connection.end()

    history = asked()
    out: list[Clause | LLMEvent] = []
    with anyio.fail_after(20):
        async with (
            scripted_server([two_sentences]) as server,
            engine_at(server.base_url) as engine,
            aclosing(clauses_from(engine.respond(history, generation=3))) as stream,
        ):
            async for item in stream:
                out.append(item)
                more.set()
    reply_text = "Sure, I can help with that. What day suits you?"
    assert out[:2] == [
        Clause(generation=3, text="Sure, I can help with that.", start=0, end=27),
        Clause(generation=3, text="What day suits you?", start=28, end=47),
    ]
    end = out[2]
    assert isinstance(end, LLMDone)
    assert (end.text, end.usage) == (reply_text, Usage(prompt_tokens=20, completion_tokens=9))
    assert json.loads(json.dumps(server.requests[0]))["stream_options"] == {"include_usage": True}


@pytest.mark.anyio
async def test_clause_offsets_span_rounds_and_fallbacks() -> None:
    bookings = Bookings()
    handlers = [tool_call_reply("book_table", '{"party_size": 2}'), stall_before_headers]
    history = asked()
    out: list[Clause | LLMEvent] = []
    with anyio.fail_after(20):
        async with (
            scripted_server(handlers) as server,
            engine_at(server.base_url, tools=bookings.tools()) as engine,
            aclosing(clauses_from(engine.respond(history, generation=3))) as stream,
        ):
            out = [item async for item in stream]
    clauses = [item for item in out if isinstance(item, Clause)]
    whole = done([e for e in out if not isinstance(e, Clause)]).text
    assert whole == f"One moment. {FALLBACK}"
    assert [(c.text, whole[c.start : c.end]) for c in clauses] == [
        ("One moment.", "One moment."),
        (FALLBACK, FALLBACK),
    ]
    assert isinstance(out[1], LLMToolCall)  # the first clause was flushed before the tool ran


@pytest.mark.anyio
async def test_the_vllm_backend_says_what_it_needs_when_vllm_is_missing() -> None:
    from agent.dialogue.llm_vllm import VLLMBackend

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: the GPU profile's own checks cover it")
    backend = make_backend(LLMConfig(backend="vllm", model="Qwen/Qwen2.5-0.5B-Instruct"))
    assert isinstance(backend, VLLMBackend)
    with anyio.fail_after(10), pytest.raises(ModelError, match="needs the `vllm` package"):
        await backend.start()


@pytest.mark.anyio
async def test_an_empty_reply_speaks_the_fallback() -> None:
    events, _ = await run_against([reply()])
    assert [type(e) for e in events] == [LLMFallback, LLMDone]
    assert events[0] == LLMFallback(generation=7, text=FALLBACK, reason="empty_reply")


@pytest.mark.anyio
async def test_calls_written_when_no_more_are_allowed_are_neither_run_nor_spoken() -> None:
    bookings = Bookings()
    events, history = await run_against(
        [reply('{"name": "book_table", "arguments": {"party_size": 2}}')],
        tools=bookings.tools(),
        max_tool_rounds=0,
    )
    assert bookings.made == []
    assert [type(e) for e in events] == [LLMFallback, LLMDone]
    assert history.reply_text() == FALLBACK


@pytest.mark.anyio
async def test_a_call_cut_off_by_a_broken_stream_is_not_run() -> None:
    async def cut_in_call(connection: Connection) -> None:
        fragment = {"index": 0, "id": "c", "function": {"name": "book_table", "arguments": "{"}}
        await connection.send_head()
        await connection.send_event(chunk(tool_calls=[fragment]))

    bookings = Bookings()
    events, history = await run_against([cut_in_call], tools=bookings.tools())
    assert bookings.made == []
    assert not any(isinstance(e, LLMToolCall) for e in events)
    assert isinstance(events[0], LLMFallback)
    assert all(not m.tool_calls for m in history.messages)


@pytest.mark.anyio
async def test_a_kept_alive_connection_closed_by_the_server_costs_nothing() -> None:
    async def reply_then_drop_the_next_request(connection: Connection) -> None:
        await connection.send_head(close=False)  # keep-alive...
        await connection.send_event(chunk("Fine."))
        await connection.send_event(chunk(finish="stop"))
        await connection.send_event("[DONE]")
        await connection.end()
        await connection.stream.receive()  # ...until the next request: closed unanswered

    history = asked()
    with anyio.fail_after(20):
        async with (
            scripted_server([reply_then_drop_the_next_request] * 3) as server,
            engine_at(server.base_url) as engine,
        ):
            for _ in range(3):
                events = await collect(engine, history)
                assert texts(events) == "Fine."
                history.add_user("Again?")
    assert len(server.requests) == 3


def breaker_of(engine: LLMEngine) -> tuple[BreakerState, str]:
    """The engine's breaker: its state, and the rule that put it there."""
    return engine.breaker.state, engine.breaker.last_rule


def llm_errors(kind: str) -> float:
    value = METRICS.registry.get_sample_value(
        "voxline_errors_total", {"where": "llm", "kind": kind}
    )
    return value or 0.0


@pytest.mark.anyio
async def test_the_reply_deadline_cuts_a_slow_reply_and_speaks_the_fallback() -> None:
    history = asked()
    before = llm_errors("reply_timeout")
    with anyio.fail_after(20):
        async with (
            scripted_server([stall_mid_reply]) as server,
            # the first token comes at once, then no stall deadline in reach: the reply's own
            engine_at(
                server.base_url, first_token_timeout_s=2, stall_timeout_s=30, reply_timeout_s=2
            ) as engine,
        ):
            events = await collect(engine, history)
            await server.client_left.wait()  # the request was aborted
    assert texts(events) == "Hello there, "
    fallback = events[-2]
    assert isinstance(fallback, LLMFallback)
    assert (fallback.reason, fallback.text) == ("reply_timeout", FALLBACK)
    assert done(events).finish_reason == "reply_timeout"
    assert llm_errors("reply_timeout") == before + 1


@pytest.mark.anyio
async def test_failures_in_a_row_open_the_breaker_and_replies_get_the_fallback_at_once() -> None:
    before = llm_errors("unavailable")
    handlers: list[Handler] = [malformed, http_500, reply("Never sent.")]
    with anyio.fail_after(20):
        async with (
            scripted_server(handlers) as server,
            engine_at(server.base_url, breaker_failures=2, breaker_cooldown_s=3600) as engine,
        ):
            failed = [await collect(engine, asked()) for _ in range(2)]
            assert engine.breaker.state is BreakerState.OPEN
            refused = await collect(engine, asked())
    firsts = [events[0] for events in failed]
    assert all(isinstance(first, LLMFallback) and first.reason == "error" for first in firsts)
    assert refused[0] == LLMFallback(
        generation=7,
        text=FALLBACK,
        reason="unavailable",
        detail="circuit breaker open after 2 failures in a row",
    )
    assert done(refused).finish_reason == "unavailable"
    assert len(server.requests) == 2  # the third reply sent no request
    assert llm_errors("unavailable") == before + 1
    assert engine.breaker.statistics().refused == 1


@pytest.mark.anyio
async def test_after_its_cooldown_the_breaker_lets_a_probe_through_and_closes() -> None:
    handlers: list[Handler] = [http_500, reply("We are back.")]
    with anyio.fail_after(20):
        async with (
            scripted_server(handlers) as server,
            engine_at(server.base_url, breaker_failures=1, breaker_cooldown_s=0) as engine,
        ):
            await collect(engine, asked())
            assert breaker_of(engine) == (BreakerState.OPEN, "C4")
            events = await collect(engine, asked())
    assert texts(events) == "We are back."
    assert breaker_of(engine) == (BreakerState.CLOSED, "H3")  # the probe went through
    assert len(server.requests) == 2


@pytest.mark.anyio
async def test_a_probe_cut_off_by_the_caller_leaves_the_next_reply_to_probe() -> None:
    handlers: list[Handler] = [http_500, stall_mid_reply, reply("Fine.")]
    with anyio.fail_after(20):
        async with (
            scripted_server(handlers) as server,
            engine_at(
                server.base_url, breaker_failures=1, breaker_cooldown_s=0, stall_timeout_s=30
            ) as engine,
        ):
            await collect(engine, asked())
            with anyio.CancelScope() as barge_in:
                async for _ in engine.respond(asked(), generation=8):
                    barge_in.cancel()  # the probe's first text: the caller cuts in
            assert breaker_of(engine) == (BreakerState.HALF_OPEN, "H5")
            events = await collect(engine, asked())
    assert texts(events) == "Fine."
    assert breaker_of(engine) == (BreakerState.CLOSED, "H3")
