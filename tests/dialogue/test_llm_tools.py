"""Tools: declarations, argument checks, built-ins and webhooks (against a real local server)."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from agent.dialogue.llm_tools import (
    ToolCall,
    ToolConfig,
    ToolResult,
    Tools,
    WebhookConfig,
    check_arguments,
)
from tests.llm_server import Connection, scripted_server

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "party_size": {"type": "integer"},
        "time": {"type": "string"},
        "seating": {"enum": ["inside", "terrace"]},
        "notes": {"type": "array", "items": {"type": "string"}},
        "vip": {"type": ["boolean", "null"]},
    },
    "required": ["party_size", "time"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ('{"party_size": 2, "time": "8pm"}', None),
        ('{"party_size": 2, "time": "8", "seating": "terrace", "notes": ["a"], "vip": null}', None),
        ("", "arguments.party_size is required"),
        ('{"party_size": 2}', "arguments.time is required"),
        ('{"party_size": "2", "time": "8pm"}', 'arguments.party_size must be integer, not "2"'),
        ('{"party_size": true, "time": "8pm"}', "arguments.party_size must be integer, not true"),
        ('{"party_size": 2, "time": "8pm", "seating": "roof"}', "must be one of"),
        ('{"party_size": 2, "time": "8pm", "notes": [1]}', "arguments.notes[0] must be string"),
        ('{"party_size": 2, "time": "8pm", "pets": 1}', "arguments.pets is not a known argument"),
        ('{"party_size": 2, "time": ', "not valid JSON"),
        ("[1]", "must be a JSON object"),
    ],
)  # fmt: skip
def test_arguments_are_checked_against_the_schema(raw: str, error: str | None) -> None:
    if error is None:
        assert check_arguments(SCHEMA, raw) == json.loads(raw)
    else:
        with pytest.raises(ValueError, match=error.replace("[", r"\[").replace("]", r"\]")):
            check_arguments(SCHEMA, raw)


def test_a_tool_is_a_webhook_or_a_builtin_never_both() -> None:
    both = {"name": "x", "builtin": "x", "webhook": {"url": "http://localhost/"}}
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        msgspec.convert(both, ToolConfig)
    with pytest.raises(msgspec.ValidationError, match="unknown field `urll`"):
        msgspec.convert({"name": "x", "webhook": {"urll": "http://localhost/"}}, ToolConfig)


def test_declarations_use_the_openai_tools_format() -> None:
    tool = ToolConfig(name="hang_up", description="End the call", builtin="hang_up")
    assert tool.schema() == {
        "type": "function",
        "function": {
            "name": "hang_up",
            "description": "End the call",
            "parameters": {"type": "object", "properties": {}},
        },
    }


def test_builtins_must_be_registered() -> None:
    with pytest.raises(ValueError, match="not registered: hang_up"):
        Tools([ToolConfig(name="hang_up", builtin="hang_up")])


BOOK = ToolConfig(name="book_table", parameters=SCHEMA, builtin="book")


async def book(arguments: Mapping[str, Any]) -> str:
    return f"booked for {arguments['party_size']} at {arguments['time']}"


async def broken(arguments: Mapping[str, Any]) -> str:
    raise RuntimeError("database down")


async def hang_up(arguments: Mapping[str, Any]) -> ToolResult:
    return ToolResult(content="bye", final=True)


@pytest.mark.anyio
async def test_builtins_get_checked_arguments_and_errors_go_back_to_the_model() -> None:
    tools = Tools(
        [BOOK, ToolConfig(name="hang_up", builtin="hang_up"), ToolConfig(name="x", builtin="x")],
        builtins={"book": book, "hang_up": hang_up, "x": broken},
    )
    with anyio.fail_after(5):
        ok = await tools(
            ToolCall(id="1", name="book_table", arguments='{"party_size": 2, "time": "8"}')
        )
        bad = await tools(ToolCall(id="2", name="book_table", arguments='{"party_size": 2}'))
        unknown = await tools(ToolCall(id="3", name="fly", arguments="{}"))
        failed = await tools(ToolCall(id="4", name="x", arguments="{}"))
        final = await tools(ToolCall(id="5", name="hang_up", arguments=""))
    assert ok == ToolResult(content="booked for 2 at 8")
    assert bad == ToolResult(
        content="invalid arguments for book_table: arguments.time is required", error=True
    )
    assert unknown.error
    assert unknown.content == "unknown tool 'fly' (tools: book_table, hang_up, x)"
    assert failed == ToolResult(content="x failed (RuntimeError)", error=True)
    assert final == ToolResult(content="bye", final=True)


async def answer_json(connection: Connection) -> None:
    await connection.send_head(200, "application/json")
    await connection.send(json.dumps({"received": connection.body}).encode())
    await connection.end()


async def answer_500(connection: Connection) -> None:
    await connection.send_head(500, "text/plain")
    await connection.send(b"no tables left")
    await connection.end()


async def never_answer(connection: Connection) -> None:
    await connection.wait_closed()


def webhook_tool(url: str, timeout_s: float = 5.0) -> ToolConfig:
    webhook = WebhookConfig(url=url, headers={"x-key": "k"}, timeout_s=timeout_s)
    return ToolConfig(name="book_table", parameters=SCHEMA, webhook=webhook)


@pytest.mark.anyio
async def test_webhooks_post_the_call_and_return_the_body() -> None:
    call = ToolCall(id="c1", name="book_table", arguments='{"party_size": 2, "time": "8pm"}')
    with anyio.fail_after(10):
        async with (
            scripted_server([answer_json, answer_500, never_answer]) as server,
            httpx.AsyncClient() as http,
        ):
            url = f"http://127.0.0.1:{server.port}/hook"
            ok = await Tools([webhook_tool(url)], http=http)(call)
            failed = await Tools([webhook_tool(url)], http=http)(call)
            slow = await Tools([webhook_tool(url, timeout_s=0.2)], http=http)(call)
            await server.client_left.wait()
    sent = {"tool": "book_table", "arguments": {"party_size": 2, "time": "8pm"}, "call_id": "c1"}
    assert json.loads(ok.content) == {"received": sent}
    assert not ok.error
    assert failed == ToolResult(content="book_table failed (HTTP 500): no tables left", error=True)
    assert slow == ToolResult(content="book_table did not answer in time", error=True)


@pytest.mark.anyio
async def test_an_unreachable_webhook_is_a_failed_call() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    call = ToolCall(id="c1", name="book_table", arguments='{"party_size": 2, "time": "8pm"}')
    with anyio.fail_after(10):
        async with httpx.AsyncClient() as http:
            result = await Tools([webhook_tool(f"http://127.0.0.1:{port}/")], http=http)(call)
    assert result == ToolResult(content="book_table is unreachable", error=True)
