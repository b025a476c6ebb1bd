"""Streaming chat completions from any OpenAI-compatible server (vLLM, llama.cpp, ...).

The request is a ``POST {base_url}/chat/completions`` with ``"stream": true``; the response is
server-sent events (:mod:`agent.dialogue.llm_sse`), one ``chat.completion.chunk`` per event
(:func:`~agent.dialogue.llm_stream.decode_chunk`), ending with ``data: [DONE]``.

**Abort.** :meth:`OpenAIBackend.stream` is an async generator holding the response open;
closing it (``aclose``, or cancelling the task that iterates it) closes the connection
(:mod:`agent.dialogue.llm_http`), which is how these servers learn that the client left: vLLM
aborts the request in its engine, llama.cpp's servers stop generating at the next token. The
tests check this against a real llama.cpp server and against a raw socket server.

**Errors** are :class:`~pipeline.errors.ModelError` with a message naming what went wrong
(server unreachable, HTTP status and the start of its body, no data for ``stall_timeout_s``,
a malformed event, the stream closing before its end). A first-token deadline is the engine's
business, not this module's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from agent.dialogue.llm_http import HTTPClient, Response
from agent.dialogue.llm_sse import SSEDecoder
from agent.dialogue.llm_stream import ChatRequest, StreamEnd, StreamItem, decode_chunk
from pipeline.errors import ModelError

#: how much of an error response body goes into the exception message
_ERROR_BODY_CHARS = 300


class OpenAIBackend:
    """Chat completions over HTTP from an OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "",
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        stall_timeout_s: float = 30.0,
        include_usage: bool = True,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._http = HTTPClient(connect_timeout_s=connect_timeout_s, read_timeout_s=stall_timeout_s)
        self._include_usage = include_usage
        self._extra_body = dict(extra_body or {})

    async def start(self) -> None:
        """Nothing to load: the server is someone else's process."""

    async def aclose(self) -> None:
        await self._http.aclose()

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "stream": True,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        if self._include_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(self._extra_body)
        return body

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamItem, None]:
        """Yield the reply's deltas, then one :class:`StreamEnd`. Close it to abort."""
        payload = json.dumps(self.body(request)).encode()
        async with self._http.post(self.url, payload, self._headers) as response:
            if response.is_error:
                detail = (await response.read(_ERROR_BODY_CHARS)).decode("utf-8", "replace")
                raise ModelError(f"LLM server answered HTTP {response.status}: {detail}")
            decoder = SSEDecoder()
            end = StreamEnd()
            done = False
            while not done and (raw := await response.receive()):
                for event in decoder.feed(raw):
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    if event.event == "error":
                        detail = event.data[:_ERROR_BODY_CHARS]
                        raise ModelError(f"LLM server sent an error: {detail}")
                    deltas, chunk_end = decode_chunk(event.data)
                    for delta in deltas:
                        yield delta
                    if chunk_end is not None:
                        end = StreamEnd(
                            chunk_end.finish_reason or end.finish_reason,
                            chunk_end.usage or end.usage,
                        )
            if done:
                await _finish(response)
            else:
                decoder.end()
                if end.finish_reason is None:
                    raise ModelError("LLM stream closed before the reply finished")
        yield end


async def _finish(response: Response) -> None:
    """Read the little that follows ``[DONE]`` (the body's end), so the connection is reused."""
    while await response.receive():
        pass
