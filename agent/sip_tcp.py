"""SIP over TCP (RFC 3261 §18.3): the connections of one ``tcp:HOST:PORT`` listen address.

The adapter holds no protocol: each connection's bytes go through its own
:class:`~transports.sip.message.StreamFramer` (messages cut by ``Content-Length``) and every
message it cuts goes to the endpoint's ``receive`` with the connection's remote address as its
source. What the user agent sends to an address goes back on the connection from that
address (a response on the connection its request came in on; our BYE on the caller's);
with none open (it closed, or a call we place), one is opened to that address.

Bounds, each stated where it is enforced:

- connections: at most ``server.sip.tcp_max_connections`` open at once; one accepted past
  that is closed at once (logged), one we would open fails that send;
- bytes buffered per connection: what the framer holds, at most one message
  (:data:`~transports.sip.message.MAX_MESSAGE_SIZE`) plus one read (:data:`READ_SIZE`); past
  it the framer breaks;
- a malformed stream (a header block too large, a ``Content-Length`` that cannot frame): the
  framer breaks, and that connection alone is closed; a framed message that does not parse is
  the user agent's (a 400 on the same connection) and the connection goes on;
- idle: a connection that carried no byte for ``server.sip.tcp_idle_s`` is closed, unless a
  call still uses it (``in_use``: its BYE goes that way);
- a send that does not complete in :data:`SEND_TIMEOUT_S` (a peer that stopped reading) closes
  that connection.

::

    SipTcp.listening                 bound; every connection closed at its end
    └─ SipTcp.serve                  in the endpoint's task group, beside its calls
         ├─ accepted                 one task a connection: read, frame, receive; closed on
         │                           EOF, error, a broken stream, idle
         └─ connections we open      (send) the same task, in the same task group
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from anyio.abc import Listener, SocketAttribute, SocketStream, TaskGroup

from transports.sip.message import ParseError, SipRequest, SipResponse, StreamFramer
from transports.sip.transaction import Address

__all__ = ["READ_SIZE", "SEND_TIMEOUT_S", "SipTcp"]

log = logging.getLogger("voxline.sip")

#: bytes read from a connection at a time
READ_SIZE = 16_384
#: a send to a connection not done by then: the peer stopped reading, the connection closes
SEND_TIMEOUT_S = 5.0
#: opening a connection to a peer (our request with none open)
CONNECT_TIMEOUT_S = 5.0

Received = Callable[[SipRequest | SipResponse | ParseError, Address], Awaitable[None]]


class _Connection:
    def __init__(self, stream: SocketStream, peer: Address) -> None:
        self.stream = stream
        self.peer = peer
        self.framer = StreamFramer()
        self.scope = anyio.CancelScope()  # cancelled: the connection closes
        self.sending = anyio.Lock()


class SipTcp:
    """One TCP listen address: ``receive`` gets every framed message, ``in_use`` says whether a
    call still needs a connection's address (then idle does not close it)."""

    def __init__(
        self,
        host: str,
        port: int,
        receive: Received,
        in_use: Callable[[Address], bool],
        *,
        max_connections: int = 256,
        idle_s: float = 120.0,
    ) -> None:
        self.host, self.port = host, port
        self._receive = receive
        self._in_use = in_use
        self.max_connections = max_connections
        self.idle_s = idle_s
        self.connections: dict[Address, _Connection] = {}
        #: connections refused at the cap, and closed for a broken stream (for logs and tests)
        self.refused = 0
        self.broken = 0
        self._tg: TaskGroup | None = None
        self._listener: Listener[SocketStream] | None = None

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """Bind (``OSError`` if it cannot); at the end every connection is closed, after what
        ran inside (the calls' last BYEs) is done."""
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        self._listener = listener
        self.port = listener.extra(SocketAttribute.local_port)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
                for connection in list(self.connections.values()):
                    await connection.stream.aclose()
                self.connections.clear()

    async def serve(self, tg: TaskGroup) -> None:
        """Accept connections until cancelled, each served by a task in ``tg`` (the
        endpoint's, which connections we open join too)."""
        assert self._listener is not None, "serve() within listening()"
        self._tg = tg
        try:
            await self._listener.serve(self._accepted, task_group=tg)
        finally:
            self._tg = None

    async def send(self, data: bytes, peer: Address) -> None:
        """``data`` to ``peer`` on its connection, opened if there is none (``OSError`` when
        it cannot be opened or the send failed; that connection is then closed)."""
        connection = self.connections.get(peer)
        if connection is None:
            connection = await self._connect(peer)
        try:
            with anyio.fail_after(SEND_TIMEOUT_S):
                async with connection.sending:
                    await connection.stream.send(data)
        except (TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError) as error:
            connection.scope.cancel()
            raise OSError(f"the connection to {peer[0]} failed: {type(error).__name__}") from None

    # -- connections ---------------------------------------------------------------------------

    async def _accepted(self, stream: SocketStream) -> None:
        address = stream.extra(SocketAttribute.remote_address)
        if isinstance(address, str):  # a UNIX socket: not ours
            await stream.aclose()
            return
        peer = (address[0], address[1])
        if len(self.connections) >= self.max_connections:
            self.refused += 1
            log.info(
                "sip tcp: a connection from %s refused: %d open", peer[0], self.max_connections
            )
            await stream.aclose()
            return
        await self._serve(_Connection(stream, peer))

    async def _connect(self, peer: Address) -> _Connection:
        if self._tg is None:
            raise OSError("the SIP TCP listener is not running")
        if len(self.connections) >= self.max_connections:
            raise OSError(f"{self.max_connections} SIP TCP connections are open")
        with anyio.fail_after(CONNECT_TIMEOUT_S):
            stream = await anyio.connect_tcp(peer[0], peer[1])
        connection = _Connection(stream, peer)
        self.connections[peer] = connection  # before any answer can come back on it
        self._tg.start_soon(self._serve, connection, name=f"sip tcp {peer[0]}")
        return connection

    async def _serve(self, connection: _Connection) -> None:
        """Read, frame and hand on until EOF, an error, a broken stream or idleness; then the
        connection closes. Cancelled (the server stops): it stays open for the calls' last
        BYEs, and :meth:`listening` closes it."""
        peer = connection.peer
        self.connections[peer] = connection
        with connection.scope:
            why = await self._read(connection)
        if connection.scope.cancelled_caught:
            why = "the send failed"
        if self.connections.get(peer) is connection:
            del self.connections[peer]
        with anyio.CancelScope(shield=True):
            await connection.stream.aclose()
        log.info("sip tcp: the connection with %s:%d ended: %s", peer[0], peer[1], why)

    async def _read(self, connection: _Connection) -> str:
        while True:
            with anyio.move_on_after(self.idle_s) as idle:
                try:
                    data = await connection.stream.receive(READ_SIZE)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return "closed by the peer"
            if idle.cancelled_caught:
                if self._in_use(connection.peer):
                    continue  # a call's requests (its BYE) go this way
                return "idle"
            for message in connection.framer.feed(data):
                await self._receive(message, connection.peer)
            if (broken := connection.framer.broken) is not None:
                self.broken += 1
                return f"a malformed stream ({broken.rule}: {broken.reason})"
