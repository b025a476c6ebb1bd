"""SIP transactions (RFC 3261 §17, with RFC 6026's Accepted state), sans-I/O.

:class:`TransactionLayer` holds every client and server transaction of one user agent. The
core above it (:mod:`transports.sip.dialog`) sends requests and responses through it; the
adapter below feeds it what arrived (:meth:`~TransactionLayer.receive`) and its clock
(:meth:`~TransactionLayer.on_timer`, when :meth:`~TransactionLayer.next_timer` is due), and
sends what :meth:`~TransactionLayer.data_to_send` returns. Time is ``now`` in seconds, passed
in; nothing here reads a clock.

Client transactions (we sent the request):

==================  ===============  =====================================  ==================
state               event            action                                 next state
==================  ===============  =====================================  ==================
Calling             timer A (UDP)    resend the INVITE, A doubles           Calling
Calling             timer B          :class:`TransactionTimeout`            Terminated
Calling             1xx              pass up; A and B stop (the core         Proceeding
                                     cancels a call that rings too long)
Calling/Proceeding  core cancels     timer B again, from now (§9.1: the     Calling/Proceeding
                    the INVITE       INVITE is given up with no final)
Calling/Proceeding  2xx              pass up (the core ACKs it), timer M    Accepted
Calling/Proceeding  300-699          ACK it, pass up, timer D (32 s UDP)    Completed
Accepted            2xx again        pass up (the core ACKs it again)       Accepted
Completed           300-699 again    ACK it again                           Completed
Trying              timer E (UDP)    resend, E doubles up to T2             Trying
Proceeding          timer E (UDP)    resend, E every T2                     Proceeding
Trying/Proceeding   timer F          :class:`TransactionTimeout`            Terminated
Trying/Proceeding   final            pass up, timer K (T4 UDP)              Completed
any                 D, K, M fire     forget it                              Terminated
==================  ===============  =====================================  ==================

Server transactions (the peer sent the request):

==================  ===============  ===================================  ==================
state               event            action                               next state
==================  ===============  ===================================  ==================
(new)               INVITE           pass up, send 100 Trying             Proceeding
(new)               other request    pass up                              Trying
Trying              request again    absorb                               Trying
Proceeding          request again    resend the last provisional          Proceeding
Proceeding          core sends 2xx   send it, timer L (INVITE only)       Accepted
Trying/Proceeding   core sends       send it; INVITE: timers G (UDP)      Completed
                    300-699 (any     and H; others: timer J (64*T1 UDP)
                    final if not
                    INVITE)
Accepted            INVITE again     absorb (the core resends the 2xx)    Accepted
Completed           request again    resend the final response            Completed
Completed           timer G          resend it, G doubles up to T2        Completed
Completed           ACK              timer I (T4 UDP)                     Confirmed
Completed           timer H          :class:`TransactionTimeout`          Terminated
any                 I, J, L fire     forget it                            Terminated
==================  ===============  ===================================  ==================

Over a reliable transport (TCP) nothing is retransmitted and D, I, J, K fire at once.
Responses go back to where the request came from (RFC 3581 style), which is right behind NAT.
Requests with no transaction (an ACK for a 2xx, anything after Terminated) and responses with
none (a 2xx resent after Accepted) are passed up as they are.
"""

from __future__ import annotations

import enum
from typing import TypeVar

import msgspec

from transports.sip.message import MAGIC_COOKIE, SipRequest, SipResponse, make_response

__all__ = [
    "Address",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "Timers",
    "TransactionEvent",
    "TransactionLayer",
    "TransactionTimeout",
    "TxState",
]

Address = tuple[str, int]


class Timers(msgspec.Struct, frozen=True):
    """RFC 3261's T1 (RTT estimate), T2 (cap on non-INVITE retransmit interval) and T4
    (a message's longest life in the network), in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class TxState(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class Outgoing(msgspec.Struct, frozen=True):
    """Bytes for the adapter to send to ``peer`` (on the connection it came from for TCP)."""

    data: bytes
    peer: Address
    reliable: bool


class RequestReceived(msgspec.Struct, frozen=True):
    """A new request (``transaction``: False for an ACK or one matching no transaction)."""

    request: SipRequest
    source: Address
    reliable: bool
    transaction: bool = True


class ResponseReceived(msgspec.Struct, frozen=True):
    """A response to ``request`` (None: a stray, such as a 2xx resent after Accepted)."""

    response: SipResponse
    request: SipRequest | None


class TransactionTimeout(msgspec.Struct, frozen=True):
    """No final response came (B, F: the core treats it as a 408), or no ACK (H)."""

    request: SipRequest
    client: bool


TransactionEvent = RequestReceived | ResponseReceived | TransactionTimeout


def _server_key(request: SipRequest) -> tuple[str, ...]:
    """RFC 3261 §17.2.3: branch, sent-by and method (ACK matches its INVITE)."""
    via = request.vias[0]
    method = "INVITE" if request.method == "ACK" else request.method
    if via.branch.startswith(MAGIC_COOKIE):
        return (via.branch, via.host, str(via.port), method)
    # RFC 2543 peers: no usable branch; match on what identifies the request instead
    return (request.call_id, str(request.cseq.number), request.from_addr.tag, str(via), method)


def _client_key(branch: str, method: str) -> tuple[str, ...]:
    return (branch, "ACK" if method == "ACK" else method)


class _Transaction:
    def __init__(self, request: SipRequest, peer: Address, reliable: bool, timers: Timers) -> None:
        self.request = request
        self.peer = peer
        self.reliable = reliable
        self.timers = timers
        self.invite = request.method == "INVITE"
        self.state = TxState.TRYING
        self.deadlines: dict[str, float] = {}
        self.interval = timers.t1
        self.last_response: SipResponse | None = None

    def next_timer(self) -> float | None:
        return min(self.deadlines.values(), default=None)

    def _wait(self, name: str, now: float, delay: float) -> None:
        self.deadlines[name] = now + delay

    def _terminate(self) -> None:
        self.state = TxState.TERMINATED
        self.deadlines.clear()


class ClientTransaction(_Transaction):
    def start(self, now: float, out: list[Outgoing]) -> None:
        self.state = TxState.CALLING if self.invite else TxState.TRYING
        out.append(Outgoing(bytes(self.request), self.peer, self.reliable))
        if not self.reliable:
            self._wait("A" if self.invite else "E", now, self.timers.t1)
        self._wait("B" if self.invite else "F", now, 64 * self.timers.t1)

    def receive(
        self, response: SipResponse, now: float, out: list[Outgoing]
    ) -> list[TransactionEvent]:
        up: list[TransactionEvent] = [ResponseReceived(response, self.request)]
        status, state = response.status, self.state
        if state in (TxState.CALLING, TxState.TRYING, TxState.PROCEEDING):
            if status < 200:
                self.state = TxState.PROCEEDING
                self.deadlines.pop("A", None)
                self.deadlines.pop("B", None)  # §17.1.1.2: B runs in Calling only
                return up
            self.deadlines.clear()
            if self.invite and status < 300:
                self.state = TxState.ACCEPTED
                self._wait("M", now, 64 * self.timers.t1)
            elif self.invite:
                self.state = TxState.COMPLETED
                out.append(self._ack(response))
                self._wait("D", now, 0 if self.reliable else 32.0)
            else:
                self.state = TxState.COMPLETED
                self._wait("K", now, 0 if self.reliable else self.timers.t4)
            return up
        if state is TxState.ACCEPTED and 200 <= status < 300:
            return up
        if state is TxState.COMPLETED and self.invite and status >= 300:
            out.append(self._ack(response))
        return []  # absorbed

    def give_up_at(self, now: float) -> None:
        """The INVITE was cancelled: with no final response in 64*T1 it times out."""
        if self.state in (TxState.CALLING, TxState.PROCEEDING):
            self._wait("B", now, 64 * self.timers.t1)

    def fire(self, name: str, now: float, out: list[Outgoing]) -> list[TransactionEvent]:
        del self.deadlines[name]
        if name in ("A", "E"):
            out.append(Outgoing(bytes(self.request), self.peer, self.reliable))
            if name == "A":
                self.interval *= 2
            elif self.state is TxState.TRYING:
                self.interval = min(2 * self.interval, self.timers.t2)
            else:  # Proceeding: every T2
                self.interval = self.timers.t2
            self._wait(name, now, self.interval)
            return []
        timed_out = name in ("B", "F")
        self._terminate()
        return [TransactionTimeout(self.request, client=True)] if timed_out else []

    def _ack(self, response: SipResponse) -> Outgoing:
        """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
        request = self.request
        headers = [
            ("Via", request.get_all("Via")[0]),
            ("Max-Forwards", "70"),
            ("From", request.get("From")),
            ("To", response.get("To")),
            ("Call-ID", request.call_id),
            ("CSeq", f"{request.cseq.number} ACK"),
            *[("Route", route) for route in request.get_all("Route")],
        ]
        ack = SipRequest(headers=tuple(headers), method="ACK", uri=request.uri)
        return Outgoing(bytes(ack), self.peer, self.reliable)


class ServerTransaction(_Transaction):
    def start(self, now: float, out: list[Outgoing]) -> None:
        self.state = TxState.PROCEEDING if self.invite else TxState.TRYING
        if self.invite:
            self.respond(make_response(self.request, 100), now, out)

    def respond(self, response: SipResponse, now: float, out: list[Outgoing]) -> None:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            raise RuntimeError(f"a {response.status} after the final response")  # our error
        self.last_response = response
        out.append(Outgoing(bytes(response), self.peer, self.reliable))
        if response.status < 200:
            self.state = TxState.PROCEEDING
        elif self.invite and response.status < 300:
            self.state = TxState.ACCEPTED
            self._wait("L", now, 64 * self.timers.t1)
        elif self.invite:
            self.state = TxState.COMPLETED
            if not self.reliable:
                self._wait("G", now, self.timers.t1)
            self._wait("H", now, 64 * self.timers.t1)
        else:
            self.state = TxState.COMPLETED
            self._wait("J", now, 0 if self.reliable else 64 * self.timers.t1)

    def receive(self, request: SipRequest, now: float, out: list[Outgoing]) -> None:
        if request.method == "ACK":
            if self.state is TxState.COMPLETED and self.invite:
                self.state = TxState.CONFIRMED
                self.deadlines.clear()
                self._wait("I", now, 0 if self.reliable else self.timers.t4)
            return
        resend = self.state in (TxState.PROCEEDING, TxState.COMPLETED)
        if resend and self.last_response is not None:
            out.append(Outgoing(bytes(self.last_response), self.peer, self.reliable))

    def fire(self, name: str, now: float, out: list[Outgoing]) -> list[TransactionEvent]:
        del self.deadlines[name]
        if name == "G":
            assert self.last_response is not None
            out.append(Outgoing(bytes(self.last_response), self.peer, self.reliable))
            self.interval = min(2 * self.interval, self.timers.t2)
            self._wait("G", now, self.interval)
            return []
        self._terminate()
        return [TransactionTimeout(self.request, client=False)] if name == "H" else []


_T = TypeVar("_T", bound=_Transaction)


class TransactionLayer:
    """Every transaction of one user agent, keyed as RFC 3261 §17.1.3 and §17.2.3 say."""

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self._clients: dict[tuple[str, ...], ClientTransaction] = {}
        self._servers: dict[tuple[str, ...], ServerTransaction] = {}
        self._out: list[Outgoing] = []

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    # -- from the adapter ------------------------------------------------------------------

    def receive(
        self, message: SipRequest | SipResponse, source: Address, reliable: bool, now: float
    ) -> list[TransactionEvent]:
        """A parsed message from ``source``: the events for the core (absorbed ones give
        none)."""
        if isinstance(message, SipResponse):
            key = _client_key(message.vias[0].branch, message.cseq.method)
            client = self._clients.get(key)
            if client is None:
                return [ResponseReceived(message, None)]
            events = client.receive(message, now, self._out)
            self._reap(self._clients, key)
            return events
        key = _server_key(message)
        server = self._servers.get(key)
        if server is not None:
            server.receive(message, now, self._out)
            self._reap(self._servers, key)
            return []
        if message.method == "ACK":
            return [RequestReceived(message, source, reliable, transaction=False)]
        server = ServerTransaction(message, source, reliable, self.timers)
        self._servers[key] = server
        server.start(now, self._out)
        return [RequestReceived(message, source, reliable)]

    def next_timer(self) -> float | None:
        """When :meth:`on_timer` is next due (None: no timer runs)."""
        found = [t.next_timer() for t in (*self._clients.values(), *self._servers.values())]
        return min((when for when in found if when is not None), default=None)

    def on_timer(self, now: float) -> list[TransactionEvent]:
        """Fire every timer due at ``now``, earliest first."""
        events: list[TransactionEvent] = []
        for key, client in list(self._clients.items()):
            events += self._fire_due(client, now)
            self._reap(self._clients, key)
        for key, server in list(self._servers.items()):
            events += self._fire_due(server, now)
            self._reap(self._servers, key)
        return events

    def _fire_due(
        self, transaction: ClientTransaction | ServerTransaction, now: float
    ) -> list[TransactionEvent]:
        events: list[TransactionEvent] = []
        for name, when in sorted(transaction.deadlines.items(), key=lambda item: item[1]):
            if when <= now and name in transaction.deadlines:
                events += transaction.fire(name, now, self._out)
        return events

    def data_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    # -- from the core ---------------------------------------------------------------------

    def send_request(self, request: SipRequest, peer: Address, reliable: bool, now: float) -> None:
        """Start a client transaction (the top Via must carry a fresh ``z9hG4bK`` branch).
        An ACK has no transaction: it is sent once, as it is."""
        if request.method == "ACK":
            self._out.append(Outgoing(bytes(request), peer, reliable))
            return
        key = _client_key(request.vias[0].branch, request.method)
        if key in self._clients:
            raise ValueError(f"branch {key[0]} is already in use")  # our error
        client = ClientTransaction(request, peer, reliable, self.timers)
        self._clients[key] = client
        client.start(now, self._out)

    def cancelled(self, invite: SipRequest, now: float) -> None:
        """Our ``invite`` was cancelled: its transaction times out (B) if no final response
        comes within 64*T1 (RFC 3261 §9.1)."""
        client = self._clients.get(_client_key(invite.vias[0].branch, "INVITE"))
        if client is not None:
            client.give_up_at(now)

    def respond(self, request: SipRequest, response: SipResponse, now: float) -> None:
        """Send ``response`` through ``request``'s server transaction (raises ``KeyError``
        when it has none: our error)."""
        key = _server_key(request)
        self._servers[key].respond(response, now, self._out)
        self._reap(self._servers, key)

    def server_state(self, request: SipRequest) -> TxState | None:
        """The state of ``request``'s server transaction (None: it has none now)."""
        server = self._servers.get(_server_key(request))
        return server.state if server else None

    def cancelled_invite(self, cancel: SipRequest) -> SipRequest | None:
        """The INVITE whose server transaction a CANCEL matches (RFC 3261 §9.2), if any."""
        server = self._servers.get((*_server_key(cancel)[:-1], "INVITE"))
        return server.request if server else None

    def send_stateless(
        self, message: SipRequest | SipResponse, peer: Address, reliable: bool
    ) -> None:
        """Send with no transaction: a 2xx resent by the core, a 400 for a broken request."""
        self._out.append(Outgoing(bytes(message), peer, reliable))

    @staticmethod
    def _reap(table: dict[tuple[str, ...], _T], key: tuple[str, ...]) -> None:
        if key in table and table[key].state is TxState.TERMINATED:
            del table[key]
