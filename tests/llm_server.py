"""LLM servers for tests: the real llama.cpp one, and small scripted ones that misbehave.

:func:`llama_server` starts ``python -m llama_cpp.server`` on the embedded Qwen2.5 0.5B GGUF
(assembled once into the user cache) and returns once it listens; a test module holds it in
a session-scoped fixture.

:class:`ScriptedServer` is a real HTTP/1.1 server on a free local port, written on raw
sockets so a test controls every byte: each request gets the next :data:`Handler` of the
script, which may stream server-sent events, stall, send garbage or close mid-stream, and can
wait until the client hangs up (:meth:`Connection.wait_closed`), which is how the tests see
that closing a stream really aborts the request.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute

from agent.dialogue.llm_local import LlamaServer, embedded_gguf


def llama_server() -> LlamaServer:
    """A started llama.cpp server (2 threads, 4096 tokens of context); stop it when done."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail("llama-cpp-python is not installed: run scripts/build_llama_wheel.sh")
    server = LlamaServer(embedded_gguf(), n_threads=2, n_ctx=4096)
    server.start()
    return server


class Connection:
    """One request to a :class:`ScriptedServer`, answered by a handler."""

    def __init__(self, stream: anyio.abc.ByteStream, body: dict[str, Any]) -> None:
        self.stream = stream
        #: the request's JSON body
        self.body = body
        self.closed_by_client = anyio.Event()

    async def send_head(
        self, status: int = 200, content_type: str = "text/event-stream", *, close: bool = True
    ) -> None:
        """Start a chunked response (saying the connection closes after it, unless not)."""
        reason = {200: "OK", 500: "Internal Server Error"}.get(status, "Status")
        head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n"
        head += "transfer-encoding: chunked\r\n"
        if close:
            head += "connection: close\r\n"
        await self.stream.send(f"{head}\r\n".encode())

    async def send(self, data: bytes) -> None:
        """One chunk of the body."""
        await self.stream.send(b"%x\r\n%s\r\n" % (len(data), data))

    async def send_event(self, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        await self.send(f"data: {data}\n\n".encode())

    async def end(self) -> None:
        """End the body properly (the last chunk)."""
        await self.stream.send(b"0\r\n\r\n")

    async def wait_closed(self) -> None:
        """Wait until the client closes the connection."""
        try:
            while await self.stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        self.closed_by_client.set()


Handler = Callable[[Connection], Awaitable[None]]


class ScriptedServer:
    def __init__(self, handlers: Sequence[Handler]) -> None:
        self._handlers = list(handlers)
        self.port = 0
        #: the JSON bodies of the requests received, in order
        self.requests: list[dict[str, Any]] = []
        #: set when a client closed a connection that a handler was waiting on
        self.client_left = anyio.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                try:
                    head += await stream.receive()
                except anyio.EndOfStream:
                    return
            head, _, body = head.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += await stream.receive()
            connection = Connection(stream, json.loads(body) if body else {})
            self.requests.append(connection.body)
            handler = self._handlers.pop(0) if self._handlers else _not_scripted
            await handler(connection)
            if connection.closed_by_client.is_set():
                self.client_left.set()


async def _not_scripted(connection: Connection) -> None:
    await connection.send_head(500, "application/json")
    await connection.send(b'{"error": "no response scripted for this request"}')
    await connection.end()


@asynccontextmanager
async def scripted_server(handlers: Sequence[Handler]) -> AsyncIterator[ScriptedServer]:
    """Serve ``handlers`` (one per request, in order) until the block ends."""
    server = ScriptedServer(handlers)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server.port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server._serve)
        yield server
        tg.cancel_scope.cancel()


def chunk(
    content: str | None = None,
    *,
    finish: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` as OpenAI-compatible servers stream it."""
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def reply(*pieces: str) -> Handler:
    """A handler streaming ``pieces`` as content deltas, then a proper end."""

    async def handle(connection: Connection) -> None:
        await connection.send_head()
        for piece in pieces:
            await connection.send_event(chunk(piece))
        await connection.send_event(chunk(finish="stop"))
        await connection.send_event("[DONE]")
        await connection.end()

    return handle
