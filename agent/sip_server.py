"""The SIP listener: one endpoint per ``server.sip.listen`` address (a UDP socket, or a TCP
listener and its connections: :mod:`agent.sip_tcp`), each owning one user agent
(:class:`~transports.sip.dialog.UserAgent`), and the calls they take.

The adapter holds no protocol: :class:`SipEndpoint` feeds the user agent every datagram of its
socket, or every message its TCP connections' framers cut (``receive``), and its clock (a task
sleeping until ``next_timer``, woken whenever the user agent was used), sends what it queues,
and routes its events: an
:class:`~transports.sip.events.IncomingCall` becomes a :class:`~agent.sip_call.SipCall` run in
the endpoint's task group; the other events of a dialog go to that call's bounded inbox.
INVITEs from outside ``allowed_networks`` get 403 from the user agent (its ``accept_source``).
:meth:`SipEndpoint.dial` places a call the same way (:class:`~agent.sip_dial.Dialing`): the
call is routed its events from the moment its INVITE is queued.

::

    SipServer.run                         the server's lifespan owns it (only when configured)
    └─ SipEndpoint.run  (one per listen address: a UDP socket or a TCP listener, one UserAgent)
         ├─ receive    datagrams (UDP) or SipTcp.serve's connections (TCP) -> UserAgent ->
         │             events routed, replies sent (over TCP: on the connection from that
         │             address, opened if none is)
         ├─ timers     UserAgent.on_timer when next_timer is due (retransmissions, 2xx resends)
         ├─ registration  with server.sip.register (first endpoint only): REGISTER through
         │                the same socket and timers (agent.sip_register); un-REGISTER at
         │                shutdown, shielded, after the calls' BYEs
         └─ SipCall.run, one per call (agent.sip_call): begin / Session.run(tasks) / finish

At shutdown the endpoints' task groups are cancelled: every call's ``finish`` (shielded) sends
its BYE before the signalling socket closes.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

import anyio
from anyio.abc import SocketAttribute, TaskGroup, TaskStatus, UDPSocket

from agent.config import AgentConfig
from agent.config.schema import SipConfig, SipRegister
from agent.grants import Caller, call_settings
from agent.models import LoadedModels, session_settings
from agent.reply import ReplyVoice, Responder
from agent.room_calls import RoomCall, RoomService, join_room
from agent.rooms import RoomError
from agent.session import Session, SessionSettings
from agent.session_events import CallSink
from agent.sip_call import Admission, Answering, CallSetup, SipCall
from agent.sip_register import (
    UNREGISTER_WAIT_S,
    log_registration,
    new_registration,
    resolve_registrar,
)
from agent.sip_tcp import SipTcp
from transports.sip.dialog import UserAgent
from transports.sip.digest import Credentials
from transports.sip.events import CallEvent, Dropped, IncomingCall
from transports.sip.message import ParseError, SipRequest, SipResponse, parse_message
from transports.sip.registration import Registered, Registration, RegistrationEvent
from transports.sip.transaction import Address

__all__ = [
    "RtpPorts",
    "ServerAdmission",
    "SipEndpoint",
    "SipServer",
    "parse_listen",
    "sip_credentials",
    "source_filter",
]

log = logging.getLogger("voxline.sip")


def parse_listen(address: str) -> tuple[str, str, int]:
    """``udp:HOST:PORT`` or ``tcp:HOST:PORT`` (the config's pattern) as
    ``(TRANSPORT, HOST, PORT)``."""
    transport, host, port = address.split(":")
    return transport, host, int(port)


def sip_credentials(config: SipConfig, environ: Mapping[str, str]) -> Credentials | None:
    """The digest credentials ``server.sip.credentials`` names, if both are set."""
    user = environ.get(config.credentials.user_env, "")
    password = environ.get(config.credentials.password_env, "")
    return Credentials(user, password) if user and password else None


def source_filter(networks: Sequence[str]) -> Callable[[Address], bool]:
    """Whether a source address is in one of ``networks`` (CIDRs)."""
    parsed = [ipaddress.ip_network(network) for network in networks]

    def allowed(source: Address) -> bool:
        try:
            address = ipaddress.ip_address(source[0])
        except ValueError:
            return False
        return any(address in network for network in parsed)

    return allowed


class ServerState(Protocol):
    """What :class:`ServerAdmission` uses of :class:`agent.server.ServerState`."""

    config: AgentConfig
    models: LoadedModels | None
    sessions: int
    #: an interpreter's rooms (agent/room_calls.py), which ``server.sip.rooms`` numbers join
    rooms: RoomService | None

    def responder(self) -> Responder: ...

    def refusal(self) -> str | None:
        """Why no call is taken now: 503 to every INVITE (draining, loading, at the limit,
        overloaded)."""
        ...


class ServerAdmission(Admission):
    """Calls count against ``server.max_sessions`` like every other transport's; none is
    taken before the models are ready, nor once the server is draining (503 all)."""

    def __init__(self, state: ServerState, caller: Caller | None = None) -> None:
        self.state = state
        #: who a SIP call is: it carries no key (let in by ``allowed_networks``), so with
        #: authentication on it is unkeyed and never unlimited (:func:`~agent.grants.
        #: call_settings`); ``None``: every grant (no authentication, ``voxline dial``); a call
        #: placed with ``POST /v1/calls`` has an admission of its own, its key's
        self.caller = caller or Caller()
        sip = state.config.server.sip
        #: the rooms by the number that joins them (``server.sip.rooms``)
        self.numbers = {entry.number: entry for entry in sip.rooms}
        self._rooms: dict[str, RoomCall] = {}  # calls in a room, by call id

    def refusal(self) -> str | None:
        """Why no call is taken now (a 503): the server's
        :meth:`~agent.server.ServerState.refusal`; None: calls are taken."""
        return self.state.refusal()

    def admit(self, call_id: str, dialled: str) -> int | None:
        state = self.state
        if self.refusal() is not None:
            return 503
        entry = self.numbers.get(dialled)
        if entry is not None:
            assert state.models is not None  # ready
            settings = self.settings(state.models.voice)
            try:
                joined = join_room(state.rooms, entry.room, entry.language, settings)
            except RoomError as error:
                log.info("sip call %s to %s refused: %s", call_id, dialled, error)
                return 486 if error.code == "room_full" else 404
            self._rooms[call_id] = joined
        state.sessions += 1
        return None

    def new_session(self, call_id: str, sink: CallSink, session_id: str | None = None) -> Session:
        if (joined := self._rooms.get(call_id)) is not None:
            return joined.start(sink, session_id or call_id)
        models = self.state.models
        assert models is not None
        settings = self.settings(models.voice)
        responder = self.state.responder()
        return Session(models.session_models(), responder, sink, settings, session_id=session_id)

    def settings(self, voice: ReplyVoice) -> SessionSettings:
        """How a SIP call runs: the agent's settings (``voice``: the loaded models'), under the
        call-length rule for :attr:`caller`, as every call's."""
        return call_settings(session_settings(self.state.config, voice), self.caller)

    async def release(self, call_id: str) -> None:
        self.state.sessions -= 1
        joined = self._rooms.pop(call_id, None)
        if joined is not None and self.state.rooms is not None:
            await self.state.rooms.leave(joined)  # the other caller hears the room close


class RtpPorts:
    """UDP ports for calls' RTP, from ``first`` to ``last`` (even ports; RTCP takes the odd
    one above), handed out round robin; a pair with either port in use is skipped."""

    def __init__(self, first: int, last: int) -> None:
        self.ports = [p for p in range(first, last + 1) if p % 2 == 0] or [first]
        self._next = 0

    async def open(self, host: str) -> tuple[UDPSocket, UDPSocket, int]:
        """RTP and RTCP sockets bound to ``host`` on the next free pair (``port``, ``port`` +
        1) and ``port``; ``OSError`` if none is free."""
        for _ in range(len(self.ports)):
            port = self.ports[self._next]
            self._next = (self._next + 1) % len(self.ports)
            try:
                rtp = await anyio.create_udp_socket(local_host=host, local_port=port)
            except OSError:
                continue
            try:
                rtcp = await anyio.create_udp_socket(local_host=host, local_port=port + 1)
            except OSError:
                await rtp.aclose()
                continue
            return rtp, rtcp, port
        raise OSError(f"no free RTP port in {self.ports[0]}-{self.ports[-1]}")


class SipEndpoint:
    """One listen address: its socket, its user agent and its calls."""

    def __init__(
        self,
        host: str,
        port: int,
        config: SipConfig,
        admission: Admission,
        ports: RtpPorts,
        *,
        transport: str = "udp",
        max_calls: int = 100,
        register: SipRegister | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.transport = transport  # "udp" or "tcp" (its listen address's)
        #: SIP over TCP (agent/sip_tcp.py), or None: over UDP
        self.tcp = (
            SipTcp(
                host,
                port,
                self._handle_message,
                self._in_use,
                max_connections=config.tcp_max_connections,
                idle_s=config.tcp_idle_s,
            )
            if transport == "tcp"
            else None
        )
        self.config = config
        self.public_address = config.public_address or host
        self.admission = admission
        self.ports = ports
        self.ua = UserAgent(
            self.public_address,
            port,
            transport="TCP" if self.tcp is not None else "UDP",
            accept_source=source_filter(config.allowed_networks),
            max_calls=max_calls,
            max_calls_per_source=config.max_calls_per_source,
            credentials=sip_credentials(config, os.environ),
        )
        self.calls: dict[str, SipCall] = {}
        self.register = register
        self.registration: Registration | None = None
        self.registered = anyio.Event()  # set at the first 2xx to our REGISTER
        self._socket: UDPSocket | None = None
        self._tg: TaskGroup | None = None
        self._wake = anyio.Event()
        self._sending = anyio.Lock()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; started once the socket is bound (``OSError`` if it cannot)."""
        if (tcp := self.tcp) is not None:
            async with tcp.listening():
                self.port = self.ua.port = tcp.port
                await self._serve(None, tcp.serve, task_status)
            return
        async with await anyio.create_udp_socket(
            local_host=self.host, local_port=self.port
        ) as sock:
            self._socket = sock
            self.port = self.ua.port = sock.extra(SocketAttribute.local_port)
            await self._serve(sock, lambda _: self._receive(sock), task_status)

    async def _serve(
        self,
        sock: UDPSocket | None,
        receive: Callable[[TaskGroup], Coroutine[Any, Any, None]],
        task_status: TaskStatus[None],
    ) -> None:
        transport = "tcp" if self.tcp is not None else "udp"
        log.info("sip: listening on %s:%s:%d", transport, self.host, self.port)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(receive, tg)
                tg.start_soon(self._timers)
                if self.register is not None:
                    tg.start_soon(self._start_registration, self.register)
                task_status.started()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                await self._unregister(sock)

    # -- what calls ask (agent.sip_call.Signalling) -------------------------------------------

    async def ring(self, call_id: str) -> None:
        self.ua.ring(call_id, anyio.current_time())
        await self._flush()

    async def answer(self, call_id: str, sdp: bytes) -> None:
        self.ua.answer(call_id, sdp, anyio.current_time())
        await self._flush()

    async def reject(self, call_id: str, status: int) -> None:
        self.ua.reject(call_id, status, anyio.current_time())
        await self._flush()

    async def hangup(self, call_id: str) -> None:
        self.ua.hangup(call_id, anyio.current_time())
        await self._flush()

    async def refer(self, call_id: str, target: str) -> None:
        if call_id not in self.ua.calls:
            raise RuntimeError("the call has ended")
        self.ua.refer(call_id, target, anyio.current_time())
        await self._flush()

    async def invite(
        self,
        call: SipCall,
        target: str,
        peer: Address,
        sdp: bytes,
        no_answer: float,
        caller: str | None = None,
    ) -> str:
        now = anyio.current_time()
        reliable = self.tcp is not None
        call.id = self.ua.invite(
            target, peer, sdp, now, reliable=reliable, no_answer=no_answer, caller=caller
        )
        self.calls[call.id] = call  # before anything is sent: every answer finds its call
        await self._flush()
        return call.id

    def dial(self, setup: CallSetup, admission: Admission | None = None) -> SipCall:
        """Place a call (``setup``: an :class:`agent.sip_dial.Dialing`) under ``admission``
        (``POST /v1/calls``: its key's; default: the endpoint's), run in the endpoint's task
        group; await its ``done``. ``RuntimeError`` once the endpoint has stopped."""
        if self._tg is None:
            raise RuntimeError("the SIP endpoint is not running")
        call = self._new_call("", setup, admission)
        self._tg.start_soon(self._run_call, call, name="sip call out")
        return call

    def _new_call(
        self, call_id: str, setup: CallSetup, admission: Admission | None = None
    ) -> SipCall:
        return SipCall(
            call_id,
            setup,
            self,
            admission or self.admission,
            self.config,
            self.open_rtp,
            self.public_address,
        )

    async def _run_call(self, call: SipCall) -> None:
        try:
            await call.run()
        finally:
            self.calls.pop(call.id, None)

    async def open_rtp(self) -> tuple[UDPSocket, UDPSocket, int]:
        return await self.ports.open(self.host)

    # -- the endpoint's tasks -----------------------------------------------------------------

    async def _receive(self, sock: UDPSocket) -> None:
        async for data, source in sock:
            await self._handle(data, source)

    async def _handle(self, data: bytes, source: Address) -> None:
        await self._handle_message(parse_message(data), source)

    async def _handle_message(
        self, message: SipRequest | SipResponse | ParseError, source: Address
    ) -> None:
        """One datagram's message, or one a TCP connection's framer cut (``reliable``)."""
        now = anyio.current_time()
        reliable = self.tcp is not None
        try:
            registration = self.registration
            if registration is not None and registration.owns(message):
                self._registration_events(registration, registration.receive(message, source, now))
                events = []
            else:
                events = self.ua.receive_message(message, source, now, reliable)
        except Exception:  # a bug of ours: that message is lost, the other calls go on
            log.exception("sip: a message from %s could not be handled", source[0])
            return
        self._route(events)
        await self._flush()

    # -- registration (server.sip.register; agent.sip_register) ---------------------------

    async def _start_registration(self, config: SipRegister) -> None:
        peer = await resolve_registrar(config)
        credentials = sip_credentials(self.config, os.environ)
        if credentials is None:
            log.info("sip: no credentials set: a challenge from %s fails", config.registrar)
        registration = new_registration(config, peer, self.public_address, self.port, credentials)
        self.registration = registration
        registration.start(anyio.current_time())
        await self._flush()

    def _registration_events(
        self, registration: Registration, events: list[RegistrationEvent]
    ) -> None:
        log_registration(events, registration.registrar_uri)
        if any(isinstance(event, Registered) for event in events):
            self.registered.set()

    def _in_use(self, peer: Address) -> bool:
        """Whether a call's requests go to ``peer`` (its TCP connection is kept open)."""
        return any(call.peer == peer for call in self.ua.calls.values())

    async def _unregister(self, sock: UDPSocket | None) -> None:
        """At shutdown: remove our binding, waiting a little for the registrar's answer (over
        UDP; over TCP the un-REGISTER is sent and not waited for)."""
        registration = self.registration
        if registration is None:
            return
        registration.stop(anyio.current_time())
        await self._flush()
        if sock is None:
            return
        with anyio.move_on_after(UNREGISTER_WAIT_S):
            try:
                await self._wait_unregistered(registration, sock)
            except (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError) as error:
                log.info("sip: un-REGISTER cut short: %s", error)

    async def _wait_unregistered(self, registration: Registration, sock: UDPSocket) -> None:
        """Feed the socket and the registration's timers until the un-REGISTER is over."""
        while not registration.done:
            due = registration.next_timer()
            wait = None if due is None else max(0.0, due - anyio.current_time())
            with anyio.move_on_after(wait):
                data, source = await sock.receive()
                await self._handle(data, source)
                continue
            events = registration.on_timer(anyio.current_time())
            self._registration_events(registration, events)
            await self._flush()

    async def _timers(self) -> None:
        while True:
            self._wake = anyio.Event()
            due = self.ua.next_timer()
            if (
                self.registration is not None
                and (when := self.registration.next_timer()) is not None
            ):
                due = when if due is None else min(due, when)
            wait = None if due is None else max(0.0, due - anyio.current_time())
            with anyio.move_on_after(wait):
                await self._wake.wait()
            if due is not None and anyio.current_time() >= due:
                self._route(self.ua.on_timer(anyio.current_time()))
                await self._flush()
            registration = self.registration
            when = None if registration is None else registration.next_timer()
            if registration is not None and when is not None and anyio.current_time() >= when:
                events = registration.on_timer(anyio.current_time())
                self._registration_events(registration, events)
                await self._flush()

    def _route(self, events: list[CallEvent]) -> None:
        for event in events:
            if isinstance(event, Dropped):
                status = f" ({event.status})" if event.status else ""
                where = f"{'tcp' if self.tcp else 'udp'}:{self.host}:{self.port}"
                log.info("sip %s dropped: %s%s", where, event.reason, status)
            elif isinstance(event, IncomingCall):
                self._start(event)
            elif (call := self.calls.get(event.call_id)) is not None:
                call.deliver(event)

    def _start(self, incoming: IncomingCall) -> None:
        call = self._new_call(incoming.call_id, Answering(incoming))
        if self._tg is None:  # stopping: no new call
            return
        self.calls[call.id] = call
        self._tg.start_soon(self._run_call, call, name=f"sip call {call.name}")

    async def _flush(self) -> None:
        """Send what the user agent queued; its next timer may have changed: wake the timers."""
        sock = self._socket
        async with self._sending:
            queued = self.ua.data_to_send()
            if self.registration is not None:
                queued += self.registration.data_to_send()
            for outgoing in queued:
                try:
                    if self.tcp is not None:
                        await self.tcp.send(outgoing.data, outgoing.peer)
                    elif sock is not None:
                        await sock.sendto(outgoing.data, *outgoing.peer)
                except OSError as error:  # an unreachable peer is that peer's problem
                    log.info("sip: sending to %s failed: %s", outgoing.peer[0], error)
        self._wake.set()


class SipServer:
    """Every endpoint of ``server.sip``, owned by the task group of :meth:`run`."""

    def __init__(self, config: SipConfig, admission: Admission, *, max_calls: int = 100) -> None:
        ports = RtpPorts(*config.rtp_ports)
        self.endpoints = [
            SipEndpoint(
                host,
                port,
                config,
                admission,
                ports,
                transport=transport,
                max_calls=max_calls,
                register=config.register if index == 0 else None,
            )
            for index, (transport, host, port) in enumerate(map(parse_listen, config.listen))
        ]

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve on every endpoint until cancelled (started once all are bound)."""
        async with anyio.create_task_group() as tg:
            for endpoint in self.endpoints:
                await tg.start(endpoint.run)
            task_status.started()
