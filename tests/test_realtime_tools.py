"""Function calling and the conversation as the LLM's history over ``/v1/realtime``: the
official ``openai`` SDK against a real server whose LLM agent runs on the real llama.cpp server
(the embedded Qwen2.5 0.5B), every server event validated against the SDK's own model of it.

A small recording proxy sits between Voxline and llama.cpp, so the tests see exactly what the
model was sent (its messages, tools and ``tool_choice``). The model is weak at tools: the calls
the tests need are forced (``tool_choice`` naming the function) or ``required``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from agent.dialogue.llm import LLMConfig, LLMDone, LLMEngine, LLMEvent, LLMToolCall, make_backend
from agent.dialogue.llm_history import History
from agent.dialogue.llm_local import LlamaServer
from agent.dialogue.llm_tools import ToolCall, ToolConfig, Tools
from agent.realtime_dialogue import client_tools, message_of, reply_key
from tests.llm_server import Connection, chunk, llama_server, scripted_server
from tests.server import ROOT, RunningServer, running_server
from tests.transports.realtime_support import SERVER_MODELS, client, fresh, server
from transports.errors import PeerError
from transports.realtime_events import ContentPart, FunctionTool, Item, ToolChoiceFunction

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
FORCED = {"type": "function", "name": "get_weather"}


class Recorder:
    """An HTTP proxy to the llama.cpp server that keeps each request's JSON body."""

    def __init__(self, target: str) -> None:
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.requests.append(json.loads(body))
                headers = {"Content-Type": "application/json"}
                with httpx.stream(
                    "POST", target + self.path, content=body, headers=headers, timeout=120
                ) as answer:
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers["content-type"])
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for data in answer.iter_raw():
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/v1"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    running = llama_server()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def proxy(llama: LlamaServer) -> Iterator[Recorder]:
    recorder = Recorder(f"http://{llama.host}:{llama.port}")
    yield recorder
    recorder.close()


@pytest.fixture(scope="module")
def voxline(tmp_path_factory: pytest.TempPathFactory, proxy: Recorder) -> Iterator[RunningServer]:
    """The LLM assistant with one tool of its own (current_datetime), greedy and brief."""
    config = msgspec.yaml.decode((ROOT / "configs" / "assistant-llm.yaml").read_bytes())
    config["profile"]["llm"] = {
        "base_url": proxy.base_url,
        "model": "qwen",
        "first_token_timeout_s": 60,
        "stall_timeout_s": 60,
    }
    config["dialogue"]["llm"].update(
        system_prompt="You are a voice assistant. Answer in one short sentence.",
        temperature=0,
        max_tokens=40,
        tools=["current_datetime"],
    )
    config["tools"] = {"builtins": ["current_datetime"]}
    path: Path = tmp_path_factory.mktemp("realtime-tools") / "assistant.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    with running_server(str(path)) as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


class Events:
    """The server's events as they come, each validated against the SDK's model of its type."""

    def __init__(self, connection: AsyncRealtimeConnection) -> None:
        self.connection = connection
        self.seen: list[dict[str, Any]] = []

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            event: dict[str, Any] = json.loads(await self.connection.recv_bytes())
            SERVER_MODELS[event["type"]].model_validate(event)
            self.seen.append(event)
            if event["type"] == "error":
                raise AssertionError(event)
            if event["type"] == kind:
                return event

    def since(self, start: int) -> list[dict[str, Any]]:
        return self.seen[start:]


def said(done: dict[str, Any]) -> str:
    """What a completed response said (its messages' transcripts or text)."""
    parts = [
        part.get("transcript") or part.get("text") or ""
        for item in done["response"]["output"]
        if item["type"] == "message"
        for part in item["content"]
    ]
    return " ".join(parts)


async def user_text(connection: AsyncRealtimeConnection, text: str, **fields: Any) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await connection.conversation.item.create(item={**item, **fields})  # type: ignore[arg-type]


def connect(voxline: RunningServer) -> Any:
    sdk = AsyncOpenAI(api_key="x", websocket_base_url=f"{voxline.ws}/v1")
    return sdk.realtime.connect(model="voxline")


def roles(request: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content") or "") for m in request["messages"]]


# -- the protocol's checks (no server) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"tools": [{**WEATHER, "parameters": {"type": "string"}}]}, "session.tools[0].parameters"),
        ({"tools": [{**WEATHER, "name": "get weather"}]}, "session.tools[0].name"),
        ({"tools": [WEATHER, WEATHER]}, "session.tools[1].name"),
        ({"tools": [{**WEATHER, "type": "mcp"}]}, "session.tools[0].type"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "x"}},
            "session.tool_choice",
        ),
        ({"tool_choice": "sometimes"}, "session.tool_choice"),
    ],
)
def test_an_invalid_tool_is_an_error_naming_its_param(session: dict[str, Any], param: str) -> None:
    protocol = fresh()
    message = {"type": "session.update", "session": {"type": "realtime", **session}}
    [event] = protocol.receive_text(json.dumps(message))
    assert isinstance(event, PeerError)
    [error] = server(protocol)
    assert error["error"]["param"] == param
    assert protocol.config.tools == ()


def test_a_response_names_only_tools_it_or_the_session_has() -> None:
    protocol = fresh()
    client(
        protocol, {"type": "session.update", "session": {"type": "realtime", "tools": [WEATHER]}}
    )
    server(protocol)
    client(protocol, {"type": "response.create", "response": {"tool_choice": FORCED}})
    assert server(protocol) == []  # the session's tool
    create = {"type": "response.create", "response": {"tools": [], "tool_choice": FORCED}}
    [event] = client(protocol, create)  # its own tools: none, then
    assert isinstance(event, PeerError)
    assert server(protocol)[0]["error"]["param"] == "response.tool_choice"


def test_function_calls_follow_the_message_said_before_them() -> None:
    protocol = fresh()
    protocol.start_response(3)
    protocol.send_text(3, "Let me check.")
    item_id = protocol.send_function_call(3, call_id="c1", name="get_weather", arguments="{}")
    protocol.send_audio(3, b"\x00\x00" * 240, 24000)  # the text is still being spoken
    protocol.end_response(3)
    events = server(protocol)
    done = events[-1]
    assert [item["type"] for item in done["response"]["output"]] == ["message", "function_call"]
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [e["output_index"] for e in added] == [0, 1]
    first_call_event = next(i for i, e in enumerate(events) if "function_call" in e["type"])
    last_audio = max(
        i for i, e in enumerate(events) if e["type"].startswith("response.output_audio")
    )
    assert last_audio < first_call_event
    assert protocol.conversation.made[item_id] == 3


# -- the engine and the history (scripted LLM server) ------------------------------------------


async def _clock(arguments: Any) -> str:
    return "noon"


async def _weather_call(connection: Connection) -> None:
    fragment = {"index": 0, "id": "call_7", "type": "function", "function": {"name": "get_weather"}}
    await connection.send_head()
    await connection.send_event(chunk("Let me check."))
    await connection.send_event(chunk(tool_calls=[fragment]))
    arguments = {"index": 0, "function": {"arguments": '{"city": "Oslo"}'}}
    await connection.send_event(chunk(tool_calls=[arguments]))
    await connection.send_event(chunk(finish="tool_calls"))
    await connection.send_event("[DONE]")
    await connection.end()


@pytest.mark.anyio
async def test_a_client_tool_is_offered_with_the_agents_and_its_call_ends_the_reply() -> None:
    clock = ToolConfig(name="clock", builtin="clock")
    tools = client_tools(
        [msgspec.convert(WEATHER, FunctionTool)], ToolChoiceFunction("get_weather")
    )
    history = History("Be brief.")
    history.add_user("Weather in Oslo?")
    events: list[LLMEvent] = []
    with anyio.fail_after(20):
        async with scripted_server([_weather_call]) as llm:
            config = LLMConfig(base_url=llm.base_url, tools=(clock,))
            backend = make_backend(config)
            engine = LLMEngine(config, backend, tools=Tools([clock], builtins={"clock": _clock}))
            try:
                async for event in engine.respond(history, generation=1, client=tools):
                    events.append(event)
            finally:
                await backend.aclose()
    [request] = llm.requests  # no second round: the client answers the call
    assert [t["function"]["name"] for t in request["tools"]] == ["clock", "get_weather"]
    assert request["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    [call] = [e for e in events if isinstance(e, LLMToolCall)]
    assert call.client
    assert call.call == ToolCall(id="call_7", name="get_weather", arguments='{"city": "Oslo"}')
    assert isinstance(events[-1], LLMDone)
    assert events[-1].finish_reason == "client_tool"
    assert history.messages[-1].tool_calls == (call.call,)  # answered later, by the client


def test_history_messages_follow_their_items() -> None:
    history = History("system")
    history.add_user("Hi.")
    history.add_assistant("Hello!")
    history.tag(reply_key(1), user="item_u")
    fact = Item("message", id="fact", role="system", content=[])
    call = Item("function_call", id="fc", call_id="c1", name="f", arguments="{}")
    output = Item("function_call_output", id="out", call_id="c1", output="42")
    assert message_of(fact, history) is None  # says nothing
    for item, after in [(call, reply_key(1)), (output, "fc")]:
        message = message_of(item, history)
        assert message is not None
        history.insert(message, after)
    said = message_of(
        msgspec.structs.replace(fact, content=[ContentPart("input_text", "It rains.")]), history
    )
    assert said is not None
    history.insert(said, None)
    assert [(m.role, m.item) for m in history.messages] == [
        ("system", "fact"),
        ("user", "item_u"),
        ("assistant", reply_key(1)),
        ("assistant", "fc"),
        ("tool", "out"),
    ]
    assert history.messages[-1].name == "f"  # the output answers call c1, of f
    assert history.truncate_last_assistant("Hel", item=reply_key(1))
    assert history.messages[2].content == "Hel"
    assert history.remove_call("c1")
    assert history.remove("out")
    assert history.remove("fact")
    assert [m.content for m in history.messages] == ["Hi.", "Hel"]
    assert history.render(calls_as_text=True)[0] == {"role": "system", "content": "system"}


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_forced_call_of_a_client_tool_ends_the_response_with_a_function_call(
    voxline: RunningServer, proxy: Recorder
) -> None:
    async with connect(voxline) as connection:
        events = Events(connection)
        with anyio.fail_after(120):
            await events.until("session.created")
            await connection.session.update(
                session={"type": "realtime", "tools": [WEATHER], "tool_choice": FORCED}
            )
            await events.until("session.updated")
            await user_text(connection, "What is the weather like in Paris?")
            await events.until("conversation.item.done")
            start = len(events.seen)
            sent = len(proxy.requests)
            await connection.response.create()
            done = await events.until("response.done")
    kinds = [e["type"] for e in events.since(start)]
    assert kinds == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    added = events.since(start)[1]["item"]
    assert (added["type"], added["status"]) == ("function_call", "in_progress")
    assert done["response"]["status"] == "completed"
    [call] = done["response"]["output"]
    assert (call["type"], call["name"], call["status"]) == (
        "function_call",
        "get_weather",
        "completed",
    )
    assert "paris" in json.loads(call["arguments"])["city"].lower()
    [request] = proxy.requests[sent:]  # one round: the client's call ends the reply
    offered = {tool["function"]["name"] for tool in request["tools"]}
    assert offered == {"get_weather", "current_datetime"}  # the agent's own tool too
    assert request["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert roles(request)[-1] == ("user", "What is the weather like in Paris?")


@pytest.mark.anyio
async def test_the_output_of_a_call_is_answered_aloud(
    voxline: RunningServer, proxy: Recorder
) -> None:
    async with connect(voxline) as connection:
        events = Events(connection)
        with anyio.fail_after(150):
            await events.until("session.created")
            await connection.session.update(session={"type": "realtime", "tools": [WEATHER]})
            await events.until("session.updated")
            await user_text(connection, "What is the weather like in Paris?")
            await connection.response.create(response={"tool_choice": "required"})
            done = await events.until("response.done")
            [call] = [
                item for item in done["response"]["output"] if item["type"] == "function_call"
            ]
            assert call["name"] == "get_weather"
            output = {
                "type": "function_call_output",
                "call_id": call["call_id"],
                "output": json.dumps({"temperature_celsius": 17, "sky": "sunny"}),
            }
            await connection.conversation.item.create(item=output)
            created = await events.until("conversation.item.done")
            assert created["previous_item_id"] == call["id"]
            sent = len(proxy.requests)
            await connection.response.create(response={"tool_choice": "none"})
            done = await events.until("response.done")
    assert done["response"]["status"] == "completed"
    assert "17" in said(done), said(done)
    [request] = proxy.requests[sent:]
    assert "tools" not in request  # tool_choice none: no tools at all
    assert "17" in json.dumps(request["messages"])  # the output, in the history


@pytest.mark.anyio
async def test_tools_given_to_one_response_are_that_responses_only(
    voxline: RunningServer, proxy: Recorder
) -> None:
    async with connect(voxline) as connection:
        events = Events(connection)
        with anyio.fail_after(150):
            await events.until("session.created")
            await user_text(connection, "What is the weather like in Rome?")
            sent = len(proxy.requests)
            await connection.response.create(response={"tools": [WEATHER], "tool_choice": FORCED})
            done = await events.until("response.done")
            assert [item["type"] for item in done["response"]["output"]] == ["function_call"]
            await user_text(connection, "Never mind. Say hello.")
            await connection.response.create()
            done = await events.until("response.done")
    first, *rest = proxy.requests[sent:]
    assert "get_weather" in json.dumps(first["tools"])
    assert rest
    assert all("get_weather" not in json.dumps(r.get("tools", [])) for r in rest)
    assert done["response"]["status"] == "completed"


@pytest.mark.anyio
async def test_items_created_and_deleted_change_what_the_model_sees(
    voxline: RunningServer, proxy: Recorder
) -> None:
    fact = "The door code is 4817."
    async with connect(voxline) as connection:
        events = Events(connection)
        with anyio.fail_after(150):
            await events.until("session.created")
            await user_text(connection, "What is the door code?", id="question")
            await connection.conversation.item.create(
                item={
                    "type": "message",
                    "role": "system",
                    "id": "fact",
                    "content": [{"type": "input_text", "text": fact}],
                },
                previous_item_id="root",
            )
            await events.until("conversation.item.done")
            sent = len(proxy.requests)
            await connection.response.create(response={"output_modalities": ["text"]})
            done = await events.until("response.done")
            assert "4817" in said(done), said(done)
            [request] = proxy.requests[sent:]
            assert roles(request)[1:] == [("system", fact), ("user", "What is the door code?")]

            await connection.conversation.item.delete(item_id="fact")
            await events.until("conversation.item.deleted")
            await connection.conversation.item.delete(item_id="question")
            await events.until("conversation.item.deleted")
            await user_text(connection, "Say goodbye.")
            sent = len(proxy.requests)
            await connection.response.create(response={"output_modalities": ["text"]})
            await events.until("response.done")
    [request] = proxy.requests[sent:]
    contents = [content for _, content in roles(request)]
    assert ("system", fact) not in roles(request)
    assert "What is the door code?" not in contents
    assert contents[-1] == "Say goodbye."


@pytest.mark.anyio
async def test_an_out_of_band_response_adds_nothing_to_the_conversation(
    voxline: RunningServer, proxy: Recorder
) -> None:
    async with connect(voxline) as connection:
        events = Events(connection)
        with anyio.fail_after(150):
            await events.until("session.created")
            await user_text(connection, "My name is Ada.")
            await events.until("conversation.item.done")
            start = len(events.seen)
            sent = len(proxy.requests)
            word = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Say the word banana."}],
            }
            await connection.response.create(
                response={
                    "conversation": "none",
                    "metadata": {"purpose": "classify"},
                    "output_modalities": ["text"],
                    "input": [word],
                }
            )
            done = await events.until("response.done")
            outside = events.since(start)
            await connection.response.create(response={"output_modalities": ["text"]})
            await events.until("response.done")
    assert done["response"]["metadata"] == {"purpose": "classify"}
    assert done["response"]["conversation_id"] is None
    assert not [e for e in outside if e["type"].startswith("conversation.item")]
    out_of_band, in_band = proxy.requests[sent:]
    assert roles(out_of_band)[1:] == [("user", "Say the word banana.")]
    assert "banana" not in json.dumps(in_band["messages"]).lower()
    assert roles(in_band)[-1] == ("user", "My name is Ada.")


@pytest.mark.anyio
async def test_a_truncated_reply_is_cut_in_the_history_too(
    voxline: RunningServer, proxy: Recorder
) -> None:
    async with connect(voxline) as connection:
        events = Events(connection)
        with anyio.fail_after(150):
            await events.until("session.created")
            await user_text(connection, "Describe Paris in two sentences.")
            await connection.response.create()
            done = await events.until("response.done")
            [message] = done["response"]["output"]
            full = message["content"][0]["transcript"]
            await connection.conversation.item.truncate(
                item_id=message["id"], content_index=0, audio_end_ms=600
            )
            await events.until("conversation.item.truncated")
            await user_text(connection, "Go on.")
            sent = len(proxy.requests)
            await connection.response.create(response={"output_modalities": ["text"]})
            await events.until("response.done")
    [request] = proxy.requests[sent:]
    role, heard = roles(request)[-2]
    assert role == "assistant"
    assert heard.endswith("…")  # the model is told it was cut off
    assert 0 < len(heard) - 1 < len(full)
    assert full.startswith(heard[:-1])


@pytest.mark.anyio
async def test_max_output_tokens_is_the_requests_max_tokens_and_its_cut_is_incomplete(
    voxline: RunningServer, proxy: Recorder
) -> None:
    async with connect(voxline) as connection:
        events = Events(connection)
        with anyio.fail_after(150):
            await events.until("session.created")
            await user_text(connection, "Describe Paris in two sentences.")
            sent = len(proxy.requests)
            await connection.response.create(
                response={"output_modalities": ["text"], "max_output_tokens": 4}
            )
            done = await events.until("response.done")
            limits = await events.until("rate_limits.updated")
    assert [r["max_tokens"] for r in proxy.requests[sent:]] == [4]  # the agent's own is 40
    assert done["response"]["status"] == "incomplete"
    assert done["response"]["status_details"]["reason"] == "max_output_tokens"
    assert said(done)
    tokens = next(r for r in limits["rate_limits"] if r["name"] == "tokens")
    assert tokens["limit"] == 4
