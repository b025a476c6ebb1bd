"""What every WebSocket call adapter does the same way: send a protocol's queued messages.

A sans-I/O protocol queues messages (``data_to_send``); :class:`Outbox` moves them, in order,
into a bounded stream (a client that stops reading holds up its own call, never the server's
memory), and :func:`write_messages` sends them, closing the call when the client has refused to
read for ``send_timeout`` seconds.
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio
from anyio.abc import ObjectReceiveStream
from starlette.websockets import WebSocket

from agent.metrics import METRICS

log = logging.getLogger("voxline.server")

Message = str | bytes


class SansIOProtocol(Protocol):
    def data_to_send(self) -> list[str] | list[bytes] | list[str | bytes]: ...


class Sender(Protocol):
    async def send(self, item: Message, /) -> None: ...


class Outbox:
    """A protocol's queued messages, moved in order into the writer's bounded stream."""

    def __init__(self, protocol: SansIOProtocol, outgoing: Sender) -> None:
        self.protocol = protocol
        self.outgoing = outgoing
        self._lock = anyio.Lock()  # two flushes never interleave their batches

    async def flush(self) -> None:
        async with self._lock:
            while batch := self.protocol.data_to_send():
                for message in batch:
                    await self.outgoing.send(message)


async def write_messages(
    ws: WebSocket, messages: ObjectReceiveStream[Message], send_timeout: float
) -> None:
    """Send every message (text or binary); ``TimeoutError`` if the client stops reading.

    The client has stopped reading when one message cannot be handed to the connection for
    ``send_timeout`` seconds (the socket's buffers are full): that is counted
    (``voxline_errors{where="websocket",kind="client_not_reading"}``) and logged, and the error
    ends the call.
    """
    async with messages:
        async for message in messages:
            try:
                with anyio.fail_after(send_timeout):
                    if isinstance(message, str):
                        await ws.send_text(message)
                    else:
                        await ws.send_bytes(message)
            except TimeoutError:
                METRICS.error("websocket", "client_not_reading")
                log.warning("a client read nothing for %.1f s: its call is dropped", send_timeout)
                raise
