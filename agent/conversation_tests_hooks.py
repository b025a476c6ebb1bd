"""The webhooks a conversation test file declares, served over real HTTP on 127.0.0.1.

``POST /hooks/<name>`` answers the file's ``webhooks.<name>.response`` as JSON with its
``status``; anything else is a 404. One request per connection (``Connection: close``), a
bounded head and body: the agent's own webhook client (httpx) talks to it as to any booking
system. The runner opens it in its task group (``await tg.start(server.run)`` gives the port).
"""

from __future__ import annotations

from http import HTTPStatus

import anyio
import msgspec
from anyio.abc import SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from agent.conversation_tests import HookResponse

__all__ = ["WebhookServer"]

MAX_HEAD = 16_384
MAX_BODY = 1_048_576


class WebhookServer:
    def __init__(self, hooks: dict[str, HookResponse]) -> None:
        self.hooks = hooks
        self.port = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    async def run(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status`` gets the port."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started(self.port)
            await listener.serve(self._serve)

    async def _serve(self, stream: SocketStream) -> None:
        async with stream:
            try:
                status, body = await self._answer(BufferedByteReceiveStream(stream))
            except (anyio.IncompleteRead, anyio.DelimiterNotFound, ValueError):
                status, body = 400, b'{"error": "bad request"}'
            except (anyio.BrokenResourceError, anyio.EndOfStream):
                return
            reason = _phrase(status)
            head = (
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            try:
                await stream.send(head.encode() + body)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    async def _answer(self, reader: BufferedByteReceiveStream) -> tuple[int, bytes]:
        head = await reader.receive_until(b"\r\n\r\n", MAX_HEAD)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if not 0 <= length <= MAX_BODY:
            raise ValueError("body too large")
        if length:
            await reader.receive_exactly(length)
        name = target.removeprefix("/hooks/")
        hook = self.hooks.get(name)
        if method != "POST" or not target.startswith("/hooks/") or hook is None:
            return 404, b'{"error": "no such webhook"}'
        return hook.status, msgspec.json.encode(hook.response)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
