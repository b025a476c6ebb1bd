"""A small streaming HTTP/1.1 client for LLM servers: h11 (sans-I/O) over anyio streams.

Why not httpx here: aborting a streamed httpx response mid-body (a barge-in, a malformed
event) leaves its nested async generators (``aiter_bytes`` → ``aiter_raw`` → httpcore's) to
the garbage collector, which closes them in tasks of their own: detached work outliving the
call, which the test suite's leaked-task check caught. Here a response is read by plain
awaits on one socket, and aborting is closing that socket, at once: the server sees the
client leave (vLLM aborts the request, llama.cpp stops at its next token).

What it does: ``POST`` with a body, ``http`` and ``https``, a deadline to connect and one
between reads, keep-alive (a connection goes back to the idle pool only after a response read
to its end; before reuse, one that has data or an end pending is dropped; a request on a
reused connection that the server closed before answering a single byte is sent again on a
new one). What it does not: proxies, redirects, compression, HTTP/2. Every failure is a
:class:`~pipeline.errors.ModelError` saying what happened.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11
from anyio.abc import SocketAttribute

from pipeline.errors import ModelError

_READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> tuple[Origin, str]:
        """The origin of ``url`` and the request target (path and query)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ModelError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port), target

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


class Response:
    """A response whose body is read as it arrives (:meth:`receive`)."""

    def __init__(self, connection: _Connection, status: int, headers: dict[str, str]) -> None:
        self._connection = connection
        self.status = status
        #: header names in lower case
        self.headers = headers
        self.complete = False

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    async def receive(self) -> bytes:
        """The next piece of the body; ``b""`` once it has all been read."""
        if self.complete:
            return b""
        while True:
            event = await self._connection.next_event()
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                return b""
            else:  # ConnectionClosed or PAUSED cannot come before the end of a body
                raise ModelError("LLM stream broken: the connection closed mid-body")

    async def read(self, limit: int) -> bytes:
        """The rest of the body, at most ``limit`` bytes of it."""
        body = b""
        while len(body) < limit and (piece := await self.receive()):
            body += piece
        return body[:limit]


class _Connection:
    def __init__(self, stream: anyio.abc.ByteStream, read_timeout_s: float) -> None:
        self.stream = stream
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        self.read_timeout_s = read_timeout_s
        #: bytes received in the current exchange
        self.received = 0

    async def send(self, *events: h11.Event) -> None:
        data = b"".join(self.h11.send(event) or b"" for event in events)
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, OSError) as error:
            raise ModelError(f"LLM connection lost while sending: {error!r}") from error

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                raise ModelError(f"LLM stream broken: {error}") from error
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # h11's sentinel types
            try:
                with anyio.fail_after(self.read_timeout_s):
                    data = await self.stream.receive(_READ_SIZE)
            except TimeoutError:
                stalled = f"LLM stream stalled: no data for {self.read_timeout_s} s"
                raise ModelError(stalled) from None
            except anyio.EndOfStream:
                data = b""
            except (anyio.BrokenResourceError, OSError) as error:
                raise ModelError(f"LLM connection lost: {error!r}") from error
            self.received += len(data)
            self.h11.receive_data(data)

    def reusable(self) -> bool:
        """Both sides finished their exchange, and the connection is still clean."""
        done = self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE
        return done and self.idle()

    def idle(self) -> bool:
        """Nothing (not even the server's end of the connection) is waiting to be read."""
        raw = self.stream.extra(SocketAttribute.raw_socket, None)
        if raw is None:
            return False
        # The event loop wraps its sockets (asyncio's TransportSocket has no recv): peek
        # through a duplicate of the descriptor, which shares the socket.
        try:
            with socket.fromfd(raw.fileno(), raw.family, raw.type) as probe:
                probe.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0))
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # data or an end of stream is waiting: not a clean idle connection

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


class HTTPClient:
    """Connections to LLM servers, kept alive between replies."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        max_idle: int = 8,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_idle = max_idle
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await connection.aclose()

    @asynccontextmanager
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[Response]:
        """Send ``body``; give the response once its head arrived; abort unless read through."""
        origin, target = Origin.of(url)
        request = h11.Request(
            method="POST",
            target=target,
            headers=[
                ("Host", origin.host_header),
                ("Content-Length", str(len(body))),
                ("User-Agent", "voxline"),
                *headers.items(),
            ],
        )
        connection = await self._idle_connection(origin)
        if connection is not None:
            try:
                response = await self._exchange(connection, request, body)
            except ModelError:
                await connection.aclose()
                if connection.received:
                    raise
                # The server closed the idle connection as we reused it: the request never
                # reached it, so it is safe to send again on a new one.
                connection = None
        if connection is None:
            connection = await self._connect(origin)
            try:
                response = await self._exchange(connection, request, body)
            except BaseException:
                await connection.aclose()
                raise
        kept = False
        try:
            yield response
            kept = response.complete and connection.reusable()
        finally:
            idle = self._idle.setdefault(origin, [])
            if kept and len(idle) < self.max_idle:
                connection.h11.start_next_cycle()
                connection.received = 0
                idle.append(connection)
            else:
                await connection.aclose()  # an unfinished response: the server sees us leave

    async def _exchange(
        self, connection: _Connection, request: h11.Request, body: bytes
    ) -> Response:
        await connection.send(request, h11.Data(data=body), h11.EndOfMessage())
        return await self._head(connection)

    async def _head(self, connection: _Connection) -> Response:
        while True:
            event = await connection.next_event()
            if isinstance(event, h11.Response):
                headers = {
                    name.decode("latin-1").lower(): value.decode("latin-1")
                    for name, value in event.headers
                }
                return Response(connection, event.status_code, headers)
            if isinstance(event, h11.ConnectionClosed):
                raise ModelError("LLM server closed the connection without answering")

    async def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin, [])
        while idle:
            connection = idle.pop()
            if connection.idle():
                return connection
            await connection.aclose()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        try:
            with anyio.fail_after(self.connect_timeout_s):
                stream: anyio.abc.ByteStream
                if origin.scheme == "https":
                    stream = await anyio.connect_tcp(
                        origin.host,
                        origin.port,
                        tls=True,
                        ssl_context=self._ssl_context,
                        tls_standard_compatible=False,
                    )
                else:
                    stream = await anyio.connect_tcp(origin.host, origin.port)
        except TimeoutError:
            raise ModelError(
                f"LLM server {origin.host_header} did not accept the connection "
                f"in {self.connect_timeout_s} s"
            ) from None
        except OSError as error:
            raise ModelError(f"LLM server unreachable at {origin.host_header}: {error}") from error
        return _Connection(stream, self.read_timeout_s)
