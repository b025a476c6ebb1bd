"""The WebSocket transports' connection (native, Realtime, Twilio) in the one call shape.

A transport contributes only a :class:`WsTransport`: its sans-I/O protocol (a frame in, events
out) and a thin adapter (its ``CallSink``'s flush, and what each event does to the call).
:func:`serve_call` runs it as a :class:`~agent.call_loop.CallConnection`
(:mod:`agent.call_loop`), the same way for all of them:

- **begin**: accept, then read frames until the protocol starts the call (:meth:`WsCall.start`),
  sending what the protocol queues directly after each frame; the events of that frame after
  the start wait for the session. The opening deadline (``open_timeout`` seconds from the
  accept, ``server.open_timeout_s``) bounds the waiting for those frames: a client that has
  not started its call by then gets the transport's words for it (``expired``: the native
  protocol's ``error`` event) and is closed with :data:`OPEN_TIMEOUT` (counted as
  ``voxline_errors{where="websocket",kind="open_timeout"}``), so an idle socket holds a
  session slot for that long at most.
- **run**: the session's task group holds the two tasks of the connection: the *reader* (feeds
  the protocol what the socket receives, applies its events, flushes) and the *writer* (sends
  the outgoing queue). The peer's goodbye or its disconnect ends the session's input
  (``session.end_input()``); so does a client the writer drops.
- **finish**: the protocol's last words (``ended``) and what is still queued are sent, then the
  socket is closed with ``1000`` and the session's end reason (``1011`` after a failure).
  Nothing is sent to a client that left or was dropped.

Each endpoint has its largest message (``max_message_bytes``: :data:`SMALL_MESSAGE_BYTES` for
the native and Twilio protocols, whose frames are 20 ms of audio; the Realtime API's largest
event, :data:`~transports.realtime_caps.MAX_MESSAGE_BYTES`). A message over it is never
parsed: the call ends and the socket is closed with ``1009`` (message too big) and a reason
naming the limit, counted as ``voxline_errors{where="websocket",kind="message_too_big"}``.
The server's own WebSocket limit (uvicorn's ``ws_max_size``, :data:`WS_MAX_SIZE`) is the
largest of them, plus 1 MiB: a message over it is refused by the WebSocket layer from its
frame header (also ``1009``, and the connection is dropped), before it is read whole.

A sans-I/O protocol queues messages (``data_to_send``); :class:`Outbox` moves them, in order,
into the call's :class:`Outgoing` queue, bounded at :data:`OUTBOX_SIZE` messages while the
writer runs (the policy: the sender waits, so a client that stops reading holds up its own
call, never the server's memory). The writer drops the call when the client has refused to
read one message for ``send_timeout`` seconds: counted as
``voxline_errors{where="websocket",kind="client_not_reading"}`` and logged. Both sides are
cancel-safe (a message is queued whole or not at all, and leaves the queue only once sent), so
what the session's end cancels in flight is still sent by ``finish``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from agent.admission import REFUSALS, SCOPE_KEY, Ticket
from agent.call_loop import Task, run_call
from agent.metrics import METRICS
from agent.session import Session
from transports.realtime_caps import MAX_MESSAGE_BYTES as REALTIME_MESSAGE_BYTES

__all__ = [
    "MESSAGE_TOO_BIG",
    "OPEN_TIMEOUT",
    "OUTBOX_SIZE",
    "SMALL_MESSAGE_BYTES",
    "WS_MAX_SIZE",
    "Message",
    "Outbox",
    "Outgoing",
    "SansIOProtocol",
    "Sender",
    "WsCall",
    "WsTransport",
    "serve_call",
]

log = logging.getLogger("voxline.server")

Message = str | bytes
#: messages a call's outgoing queue holds while its writer runs (see the module doc)
OUTBOX_SIZE = 256
#: the close code of a socket whose call did not start within its opening deadline (4000 +
#: HTTP's 408 Request Timeout; docs/protocol.md)
OPEN_TIMEOUT = 4408
#: the close code of a socket that sent a message over its endpoint's limit (RFC 6455)
MESSAGE_TOO_BIG = 1009
#: the largest message of the native and Twilio endpoints (a 20 ms frame is a few KiB)
SMALL_MESSAGE_BYTES = 256 * 1024
#: the WebSocket layer's own limit (uvicorn's): the largest endpoint's, and 1 MiB over it so
#: that a message a little too big still gets its endpoint's close reason
WS_MAX_SIZE = max(SMALL_MESSAGE_BYTES, REALTIME_MESSAGE_BYTES) + 1024 * 1024

E = TypeVar("E")


class SansIOProtocol(Protocol):
    def data_to_send(self) -> list[str] | list[bytes] | list[str | bytes]: ...


class Sender(Protocol):
    async def send(self, item: Message, /) -> None: ...


class Outgoing:
    """One call's outgoing messages, in order, for the writer (a :class:`Sender`).

    While :attr:`bounded` (the writer runs), :meth:`send` waits while ``capacity`` messages are
    queued; otherwise (before and after the call's task group, when the call loop sends them
    itself) it never waits.
    """

    def __init__(self, capacity: int = OUTBOX_SIZE) -> None:
        self.capacity = capacity
        self.bounded = False
        self._messages: deque[Message] = deque()
        self._changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._messages)

    async def send(self, item: Message, /) -> None:
        """Queue ``item`` (whole, or not at all when cancelled)."""
        while self.bounded and len(self._messages) >= self.capacity:
            await self._changed.wait()
        self._messages.append(item)
        self._notify()

    async def head(self) -> Message:
        """The oldest message, once there is one; it stays queued until :meth:`sent`."""
        while not self._messages:
            await self._changed.wait()
        return self._messages[0]

    def sent(self) -> None:
        """The head has been sent."""
        self._messages.popleft()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class Outbox:
    """A protocol's queued messages, moved in order to ``outgoing``; a cancelled flush leaves
    the rest of its batch for the next one."""

    def __init__(self, protocol: SansIOProtocol, outgoing: Sender) -> None:
        self.protocol = protocol
        self.outgoing = outgoing
        self._batch: deque[Message] = deque()
        self._lock = anyio.Lock()  # two flushes never interleave their batches

    async def flush(self) -> None:
        async with self._lock:
            while True:
                if not self._batch:
                    self._batch.extend(self.protocol.data_to_send())
                    if not self._batch:
                        return
                await self.outgoing.send(self._batch[0])
                self._batch.popleft()


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
    last words once the session is over; ``opened`` runs once before the first read (it may
    start the call at once); ``expired`` queues the protocol's words for a client that did not
    start its call within the opening deadline (the socket is closed after them); ``over``
    runs once the call is over, however it ended (the peer leaving first too): the sink lets go
    of its session, else Session -> sink -> Session keeps the ended call until a full
    collection (tests/test_call_freed.py).
    """

    protocol: WireProtocol[E]
    flush: Callable[[], Awaitable[None]]
    handle: Callable[[E, WsCall], Awaitable[bool]]
    ended: Callable[[Session], None] | None = None
    opened: Callable[[WsCall], Awaitable[None]] | None = None
    expired: Callable[[float], None] | None = None
    over: Callable[[], None] | None = None


class WsCall:
    """The call a transport's ``handle`` acts on: its session, once started."""

    def __init__(self) -> None:
        self.session: Session | None = None

    def start(self, session: Session) -> None:
        """Start the call with ``session``. It runs once this event is handled; the events
        after it are handled in the session's task group, once :attr:`Session.started`."""
        if self.session is not None:
            raise RuntimeError("the call has started already")
        self.session = session


class _Connection(Generic[E]):
    """One WebSocket as a :class:`~agent.call_loop.CallConnection`."""

    def __init__(
        self,
        ws: WebSocket,
        transport: WsTransport[E],
        outgoing: Outgoing,
        send_timeout: float,
        open_timeout: float | None,
        max_message_bytes: int = SMALL_MESSAGE_BYTES,
    ) -> None:
        self.ws = ws
        self.max_message_bytes = max_message_bytes
        #: the size of the message over the limit that ended the call (0: none did)
        self.oversized = 0
        self.transport = transport
        self.outgoing = outgoing
        self.send_timeout = send_timeout
        self.open_timeout = open_timeout
        self.call = WsCall()
        #: why nothing more may be sent: the client left, or stopped reading
        self.gone: str | None = None
        #: the call did not start within the opening deadline
        self.expired = False
        #: the call started with every session slot taken (:mod:`agent.admission`)
        #: why the call was refused when it started (a key of ``REFUSALS``; empty: it was not)
        self.refused = ""
        self._goodbye = False
        self._early: list[E] = []  # events of the starting frame, after the start

    async def begin(self) -> Session | None:
        deadline = math.inf
        if self.open_timeout is not None:
            deadline = anyio.current_time() + self.open_timeout
        if self.transport.opened is not None:
            await self.transport.opened(self.call)
        if self._started():
            self._admit()  # started as it opened (Realtime)
        while (
            not self.refused
            and await self._send_queued()
            and not self._started()
            and not self._goodbye
        ):
            events = await self._receive_opening(deadline)
            if events is None:
                return None
            for index, event in enumerate(events):
                if not await self.transport.handle(event, self.call):
                    self._goodbye = True
                if self._started():
                    self._early = events[index + 1 :]
                    self._admit()
                    break
        if self.gone or self._goodbye or self.refused:
            return None
        return self.call.session

    def _admit(self) -> None:
        """The call has started: it takes a session slot, or is refused (nothing it queued
        is sent; :mod:`agent.admission`)."""
        ticket = self.ws.scope.get(SCOPE_KEY)
        if isinstance(ticket, Ticket) and not ticket.start():
            METRICS.error("admission", ticket.refusal)
            log.info("a call started and was refused (%s): closed (1013)", ticket.refusal)
            self.refused = ticket.refusal

    def _started(self) -> bool:
        return self.call.session is not None

    async def _receive_opening(self, deadline: float) -> list[E] | None:
        """The next frame's events, unless the deadline passes first (``None``: it passed,
        and :attr:`expired`; or the client left). Only the waiting is under the deadline:
        what the protocol queues is sent whole."""
        with anyio.CancelScope(deadline=deadline):
            return await self._receive()
        assert self.open_timeout is not None  # only a deadline cancels the scope
        METRICS.error("websocket", "open_timeout")
        log.info("a WebSocket did not start its call within %g s: closed", self.open_timeout)
        self.expired = True
        if self.transport.expired is not None:
            self.transport.expired(self.open_timeout)
        return None

    def tasks(self, session: Session) -> Sequence[Task]:
        self.outgoing.bounded = True
        return [("reader", lambda: self._read(session)), ("writer", lambda: self._write(session))]

    async def finish(self, session: Session | None, failure: Exception | None) -> None:
        self.outgoing.bounded = False  # no writer runs: what is left is sent below
        if self.gone is not None:
            return
        if session is not None and self.transport.ended is not None:
            self.transport.ended(session)
        # a refused call's opening messages (session.started) are not sent: it never ran
        if not self.refused and not await self._send_queued():
            return
        if failure is not None:
            code, reason = 1011, "internal error"
        elif self.expired:
            code, reason = OPEN_TIMEOUT, "the call did not start in time"
        elif self.refused:
            code, reason = 1013, REFUSALS[self.refused]
        elif self.oversized:
            code = MESSAGE_TOO_BIG
            reason = f"message too big: {self.oversized} bytes (limit {self.max_message_bytes})"
        else:
            code, reason = 1000, (session.ended if session is not None else None) or "ended"
        with contextlib.suppress(WebSocketDisconnect):  # it left meanwhile: closed either way
            await self.ws.close(code, reason)

    # -- the tasks ------------------------------------------------------------------------------

    async def _read(self, session: Session) -> None:
        await session.started.wait()
        events, self._early = self._early, []
        while await self._handle(events):
            received = await self._receive()
            if received is None:
                break
            events = received
        session.end_input()  # the peer's goodbye, or it left: the call is over

    async def _handle(self, events: list[E]) -> bool:
        """Apply ``events`` (all of them, even after the peer's goodbye) and flush; ``False``
        once the peer has ended its side."""
        going = True
        for event in events:
            going = await self.transport.handle(event, self.call) and going
        await self.transport.flush()
        return going

    async def _write(self, session: Session) -> None:
        while await self._send(await self.outgoing.head()):
            self.outgoing.sent()
        session.end_input()  # the client left, or stopped reading

    # -- the socket -----------------------------------------------------------------------------

    async def _receive(self) -> list[E] | None:
        """The events of the next frame; ``None`` once the client has left."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            self.gone = self.gone or "left"
            return None
        text, data = message.get("text"), message.get("bytes") or b""
        size = len(data) if text is None else _utf8_size(text)
        if size > self.max_message_bytes:  # not parsed: the call ends, closed with 1009
            METRICS.error("websocket", "message_too_big")
            log.info("a message of %d bytes (limit %d): closed", size, self.max_message_bytes)
            self.oversized = size
            return None
        if text is not None:
            return self.transport.protocol.receive_text(text)
        return self.transport.protocol.receive_bytes(data)

    async def _send_queued(self) -> bool:
        """Flush the protocol and send everything queued; ``False`` if the client is gone."""
        await self.transport.flush()
        while len(self.outgoing):
            if not await self._send(await self.outgoing.head()):
                return False
            self.outgoing.sent()
        return True

    async def _send(self, message: Message) -> bool:
        """Send one message; ``False`` (and :attr:`gone`) if the client left or read nothing
        for ``send_timeout`` seconds."""
        if self.gone is not None:
            return False
        try:
            with anyio.fail_after(self.send_timeout):
                if isinstance(message, str):
                    await self.ws.send_text(message)
                else:
                    await self.ws.send_bytes(message)
        except WebSocketDisconnect:
            self.gone = "left"
            return False
        except TimeoutError:
            METRICS.error("websocket", "client_not_reading")
            log.warning("a client read nothing for %.1f s: its call is dropped", self.send_timeout)
            self.gone = "not_reading"
            return False
        return True


async def serve_call(
    ws: WebSocket,
    make: Callable[[Sender], WsTransport[E]],
    *,
    send_timeout: float,
    open_timeout: float | None = None,
    subprotocol: str | None = None,
    max_message_bytes: int = SMALL_MESSAGE_BYTES,
) -> None:
    """Serve one WebSocket call with the transport ``make`` builds, until either side ends it.

    The call ends when the peer says goodbye or the session ends (the socket is closed with
    ``1000`` and the session's end reason, after the messages left are sent), when the peer
    disconnects (nothing more is sent), or when it stops reading for ``send_timeout`` seconds
    (dropped). A failure of the session raises :class:`~pipeline.errors.StageFailed` after
    the socket is closed with ``1011``. A call not started ``open_timeout`` seconds after the
    accept is closed with :data:`OPEN_TIMEOUT` (``None``: no deadline). A message over
    ``max_message_bytes`` ends the call: closed with :data:`MESSAGE_TOO_BIG`.
    """
    try:
        await ws.accept(subprotocol=subprotocol)
    except WebSocketDisconnect:
        return
    outgoing = Outgoing(OUTBOX_SIZE)
    transport = make(outgoing)
    connection = _Connection(ws, transport, outgoing, send_timeout, open_timeout, max_message_bytes)
    try:
        await run_call(connection)
    finally:  # after the call's watchers too: the call record reads the session's end
        if transport.over is not None:
            transport.over()


def _utf8_size(text: str) -> int:
    """The bytes of ``text`` on the wire (ASCII, the usual JSON, is not encoded to count)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
