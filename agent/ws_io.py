"""The one call loop of the WebSocket transports (native, Realtime, Twilio; SIP-over-WS later).

A transport contributes only a :class:`WsTransport`: its sans-I/O protocol (a frame in,
events out) and a thin adapter (its ``CallSink``'s flush, and what each event does to the
call). :func:`serve_call` does the rest the same way for all of them: accept, one reader that
feeds the protocol and the session, one writer, the end of the call and its close code.

A sans-I/O protocol queues messages (``data_to_send``); :class:`Outbox` moves them, in order,
into a bounded stream of :data:`OUTBOX_SIZE` messages (the policy: the sender waits, so a client
that stops reading holds up its own call, never the server's memory), and
:func:`write_messages` sends them, dropping the call when the client has refused to read for
``send_timeout`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import anyio
from anyio.abc import ObjectReceiveStream, TaskGroup
from starlette.websockets import WebSocket, WebSocketDisconnect

from agent.metrics import METRICS
from agent.session import Session

log = logging.getLogger("voxline.server")

Message = str | bytes
#: messages a call's outbox holds; a full outbox makes the session wait (see the module doc)
OUTBOX_SIZE = 256

E = TypeVar("E")


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


class WireProtocol(Protocol[E]):
    """A transport's sans-I/O protocol, as the call loop sees it: what a frame means."""

    def receive_text(self, text: str, /) -> list[E]: ...
    def receive_bytes(self, data: bytes, /) -> list[E]: ...


@dataclass(frozen=True)
class WsTransport(Generic[E]):
    """What one WebSocket transport adds to :func:`serve_call`: its protocol and a thin adapter.

    ``flush`` moves the protocol's queued messages to the writer (its sink's
    :meth:`Outbox.flush`); ``handle`` applies one event the protocol decoded, starting the
    session with :meth:`WsCall.start` when the protocol says the call has begun, and returns
    ``False`` when the peer has ended its side (its goodbye); ``ended`` queues the protocol's
    last words once the session is over; ``opened`` runs once before the first read.
    """

    protocol: WireProtocol[E]
    flush: Callable[[], Awaitable[None]]
    handle: Callable[[E, WsCall], Awaitable[bool]]
    ended: Callable[[Session], None] | None = None
    opened: Callable[[WsCall], Awaitable[None]] | None = None


class WsCall:
    """The call a transport's ``handle`` acts on: its session, once started."""

    def __init__(self, tasks: TaskGroup, transport: WsTransport[Any], send_timeout: float) -> None:
        self.session: Session | None = None
        self._tasks = tasks
        self._transport = transport
        self._send_timeout = send_timeout

    def start(self, session: Session) -> None:
        """Run ``session`` in this call's task group; when it ends, so does the reading."""
        self.session = session
        self._tasks.start_soon(self._run, session)

    async def _run(self, session: Session) -> None:
        try:
            await session.run()
        finally:
            if self._transport.ended is not None:
                self._transport.ended(session)
            with anyio.move_on_after(self._send_timeout, shield=True):
                await self._transport.flush()  # the last words, queued behind what is left
            self._tasks.cancel_scope.cancel()  # stop reading: the call is over


async def serve_call(
    ws: WebSocket,
    make: Callable[[Sender], WsTransport[E]],
    *,
    send_timeout: float,
    subprotocol: str | None = None,
) -> None:
    """Serve one WebSocket call with the transport ``make`` builds, until either side ends it.

    One reader (this task) feeds the protocol what the socket receives and flushes what it
    queues; one writer (:func:`write_messages`) sends the outbox. The call ends when the peer
    says goodbye or the session ends (the socket is closed with ``1000`` and the session's end
    reason, after the messages left are sent), when the peer disconnects (nothing more is
    sent), or when it stops reading for ``send_timeout`` seconds (dropped).
    """
    await ws.accept(subprotocol=subprotocol)
    outgoing, pending = anyio.create_memory_object_stream[Message](OUTBOX_SIZE)
    left = False
    call: WsCall | None = None
    try:
        transport = make(outgoing)
        async with anyio.create_task_group() as tg:
            tg.start_soon(write_messages, ws, pending, send_timeout)
            async with anyio.create_task_group() as tasks:
                call = WsCall(tasks, transport, send_timeout)
                if transport.opened is not None:
                    await transport.opened(call)
                await transport.flush()
                reading = True
                while reading:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        left = True
                        break
                    if (text := message.get("text")) is not None:
                        events = transport.protocol.receive_text(text)
                    else:
                        events = transport.protocol.receive_bytes(message.get("bytes") or b"")
                    for event in events:  # all of them, even after the peer's goodbye
                        if not await transport.handle(event, call):
                            reading = False
                    await transport.flush()
                if call.session is not None:
                    call.session.end_input()
            if left:
                tg.cancel_scope.cancel()
            outgoing.close()  # the writer sends what is left, then ends
        if not left:
            session = call.session if call is not None else None
            ended = session.ended if session is not None else None
            await ws.close(1000, ended or "ended")
    except* (WebSocketDisconnect, TimeoutError, anyio.BrokenResourceError):
        pass  # the client left, or stopped reading: the call is over either way
    finally:
        outgoing.close()
        pending.close()
