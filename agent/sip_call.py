"""One SIP call, either way: its RTP socket, its media clock and its session.

The thin adapter around :class:`~transports.rtp.stream.RtpStream` (the G.711 leg: jitter
buffer, symmetric RTP, comfort silence) for one dialog of :mod:`agent.sip_server`'s user
agent, run in the one call shape of :mod:`agent.call_loop`. Inbound and outbound calls are
the same :class:`SipCall`; only how the media is agreed differs (its :class:`CallSetup`):

- **begin**: the call admitted (``server.max_sessions``: 503 while loading or at the limit),
  one RTP port of ``server.sip.rtp_ports`` taken, then the setup. :class:`Answering` (an
  INVITE came): the caller's offer answered (:func:`~transports.sip.sdp.answer_offer`), 180
  then (after ``ring_ms``) 200, and the ACK awaited; a CANCEL meanwhile ends it (the user agent
  answers 487), an offer we cannot take gets 488. :class:`agent.sip_dial.Dialing` (we call):
  our offer in an INVITE, the callee's answer in its 2xx.
- **tasks**, in the session's task group: ``signalling`` (the dialog's events: a BYE ends the
  call, a re-INVITE or UPDATE is answered by the call's :class:`MediaSession` (hold: no RTP
  goes out and the caller's side is not pushed; unhold; a codec or address change applied to
  the stream; 400/488 and nothing changes), a transfer's REFER
  answer and NOTIFYs become the session's ``transfer_result``, a key by SIP INFO its
  ``dtmf``), ``rtp-in`` (every datagram to :meth:`RtpStream.receive`, whose RFC 4733 digits go
  to the session's ``dtmf``; no RTP for ``media_timeout_s`` ends the call) and
  ``media-clock``: every 20 ms one :meth:`RtpStream.tick`, whose caller frame (8 kHz PCM16,
  silence where a packet was missing) goes to 16 kHz and into the session, and whose packet
  (the bot's next 20 ms, or comfort silence) goes out; ``rtcp``: SR/RR every 5 s on the RTP
  port + 1, or on the RTP port with rtcp-mux (:mod:`agent.sip_rtcp`).
- **finish**: BYE unless the peer hung up first (the agent hung up, the call failed, the
  server is stopping; CANCEL for our INVITE not yet answered), the last RTCP report with an
  RTCP BYE, then the RTP and RTCP sockets closed.

:class:`SipSink` is the session's side: the playout writes reply audio at 8 kHz (it resamples
to :attr:`SipSink.output_rate`) a bounded ``lead`` ahead of real time into the stream's queue;
a barge-in clears that queue, so the next tick sends silence (the reply stops on the wire
within one frame) and what went out is reported as heard. A transfer the session asks for is
a blind transfer by REFER (RFC 3515): refused, or a NOTIFY with a final status of 300 or more,
is ``transfer_result(False, ...)``; a NOTIFY with a 2xx is ``transfer_result(True)``, the
session ends the call (``transferred``) and finish sends the BYE. No answer in time: the
session's own transfer deadline fails it. Digits the session asks to key go out as RFC 4733
telephone events (:meth:`RtpStream.send_digits`, after the reply audio queued; a hang-up
right after them waits for them before its BYE); with no telephone-event agreed they fail
(``dtmf_failed``: SIP INFO is not sent).

Socket buffers: anyio keeps at most 100 datagrams a socket and drops the oldest past that
(real-time audio from the network is never blocked); the jitter buffer holds 200 ms at most.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import anyio
from anyio.abc import UDPSocket
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agent.call_loop import Task, run_call
from agent.config.schema import SipConfig
from agent.session import Session
from agent.session_control import CallControls
from agent.session_events import (
    CallEnded,
    CallSink,
    DigitsRequested,
    Interrupted,
    Notice,
    SessionEvent,
    TransferRequested,
)
from agent.sip_rtcp import RtcpLeg
from pipeline.clock import MonotonicClock, WallClock
from transports.audio import AudioFormat, InboundAudio
from transports.rtp.dtmf import Digit
from transports.rtp.stream import FRAME_SAMPLES, RtpStream
from transports.sip.events import (
    CallCancelled,
    CallConfirmed,
    CallEvent,
    DtmfInfo,
    IncomingCall,
    ReferAnswered,
    ReferNotify,
    Reoffer,
)
from transports.sip.events import CallEnded as DialogEnded
from transports.sip.reoffer import MediaSession
from transports.sip.sdp import (
    Negotiated,
    Origin,
    SdpError,
    SessionDescription,
    answer_offer,
    make_offer,
    parse_sdp,
)
from transports.sip.transaction import Address

log = logging.getLogger("voxline.sip")

RATE = 8000
FRAME_S = FRAME_SAMPLES / RATE
#: dialog events waiting for the call's signalling task (a handful a call: BYE, re-INVITE)
EVENTS_IN = 16
#: ticks the media clock runs late before it skips them rather than catching up
MAX_BEHIND = 10
#: the ACK for our 200 comes within 64*T1 (32 s) or the user agent ends the call; a little more
ACK_TIMEOUT_S = 40.0
#: the agent hung up with digits still to key: they go out first, for this long at most
KEYING_S = 10.0


class Signalling(Protocol):
    """What a call asks of its endpoint's user agent (each sends what it queues)."""

    async def ring(self, call_id: str) -> None: ...
    async def answer(self, call_id: str, sdp: bytes) -> None: ...
    async def reject(self, call_id: str, status: int) -> None: ...
    async def hangup(self, call_id: str) -> None: ...
    async def refer(self, call_id: str, target: str) -> None: ...

    async def invite(
        self,
        call: SipCall,
        target: str,
        peer: Address,
        sdp: bytes,
        no_answer: float,
        caller: str | None = None,
    ) -> str:
        """Send our INVITE (from ``caller``, a SIP URI; None: ours); its dialog's events go to
        ``call`` (whose id it returns)."""
        ...


class CallSetup(Protocol):
    """How one call's media is agreed: :class:`Answering` an INVITE, or
    :class:`agent.sip_dial.Dialing` out."""

    #: the number the caller dialled (the user part of the INVITE's request URI; empty for a
    #: call we place)
    dialled: str
    #: the session's (and its record's) id, when the call's placer chose it (``POST
    #: /v1/calls``); None: a new one
    session_id: str | None

    async def negotiate(self, call: SipCall, port: int) -> Negotiated | None:
        """Offer/answer with RTP on ``port``: what was agreed (``None``: no call; its
        :attr:`SipCall.reason` says why)."""
        ...

    async def refuse(self, call: SipCall, status: int, reason: str) -> None:
        """The call cannot be taken (not admitted, no RTP port)."""
        ...

    async def close(self, call: SipCall) -> None:
        """After the hang-up, shielded: wait for what it must (a CANCEL's outcome)."""
        ...


class Admission(Protocol):
    """The server's side of a call: whether one may start, its session, its end."""

    def admit(self, call_id: str, dialled: str) -> int | None:
        """``None``: call ``call_id`` to number ``dialled`` may start (it is counted until
        :meth:`release`); else the SIP status to refuse it with (503 while loading or at the
        session limit; a dialled room that cannot take it: agent/room_calls.py)."""
        ...

    def new_session(self, call_id: str, sink: CallSink, session_id: str | None = None) -> Session:
        """The call's session (``session_id``: its id, else a new one)."""
        ...

    async def release(self, call_id: str) -> None: ...


class SipSink(CallSink):
    """What the session says: reply audio into the RTP stream, the rest to the log.

    It counts what was written per reply and what the stream has sent, so a barge-in
    reports as heard the samples that went out on the wire.
    """

    #: the call's session, once it has started (digits it cannot key go back to it)
    session: CallControls | None = None
    #: digits go out as RFC 4733 events (agent.session_events.DigitSink)
    keys_digits = True

    def __init__(
        self,
        stream: RtpStream,
        name: str,
        transfer: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.stream = stream
        self.name = name
        self._transfer = transfer
        self.written = 0  # samples written, all replies
        self.dropped = 0  # samples cleared before they were sent
        #: the live reply: generation -> (where it starts among the samples that go out, count)
        self._replies: dict[int, tuple[int, int]] = {}

    @property
    def output_rate(self) -> int:
        return RATE

    @property
    def sent(self) -> int:
        return self.written - self.dropped - self.stream.queued_samples

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        first, count = self._replies.get(generation, (self.written - self.dropped, 0))
        samples = len(pcm) // 2
        self._replies = {generation: (first, count + samples)}  # the live reply only
        self.written += samples
        self.stream.send_audio(pcm)

    async def end_audio(self, generation: int) -> None:
        self.stream.flush()

    async def clear_audio(self, generation: int) -> int:
        sent = self.sent
        self.dropped += self.stream.clear()
        first, count = self._replies.get(generation, (sent, 0))
        return max(0, min(count, sent - first))

    async def send_event(self, event: SessionEvent) -> None:
        match event:
            case CallEnded(reason=reason):
                log.info("sip call %s: the agent ended it (%s)", self.name, reason)
            case Interrupted(generation=generation, played_ms=played):
                log.info(
                    "sip call %s: reply %d interrupted at %d ms", self.name, generation, played
                )
            case Notice(code=code, rule=rule):  # the message may quote the caller: not logged
                log.info("sip call %s: %s %s", self.name, code, rule)
            case TransferRequested(target=target) if self._transfer is not None:
                await self._transfer(target)
            case DigitsRequested(digits=digits):
                try:
                    self.stream.send_digits(digits)
                except ValueError as error:  # no telephone-event agreed
                    if self.session is not None:
                        await self.session.dtmf_failed(str(error))
            case _:
                pass  # the caller hears the call; there is no one to tell the rest


class SipCall:
    """One dialog from its INVITE to its end (:meth:`run`), as a
    :class:`~agent.call_loop.CallConnection`."""

    def __init__(
        self,
        call_id: str,
        setup: CallSetup,
        signalling: Signalling,
        admission: Admission,
        config: SipConfig,
        open_rtp: Callable[[], Awaitable[tuple[UDPSocket, UDPSocket, int]]],
        public_address: str,
        *,
        clock: WallClock | None = None,
    ) -> None:
        self.id = call_id  # "" for our call until the INVITE is sent
        self.setup = setup
        self.signalling = signalling
        self.admission = admission
        self.config = config
        self.public_address = public_address
        self.clock = clock or MonotonicClock()
        self._epoch = self.clock.now()  # media time's origin (media_time)
        self.reason: str | None = None
        #: the SIP status that ended the call before it started (busy, declined, no answer)
        self.failure: tuple[int, str] | None = None
        self.answered = False
        self.done = anyio.Event()  # run() is over
        self.peer_host = ""  # where the signalling goes (a transfer target's default host)
        self.rtp: UDPSocket | None = None
        self.rtcp_socket: UDPSocket | None = None  # RTP's port + 1 (unused with rtcp-mux)
        self.rtcp: RtcpLeg | None = None  # reports and BYE (agent.sip_rtcp)
        self.stream: RtpStream | None = None
        self.negotiated: Negotiated | None = None
        #: the SDP we answered the INVITE with (None for our INVITE: its offer is remade)
        self.answered_with: SessionDescription | None = None
        self.media: MediaSession | None = None  # what re-offers change (hold, codec)
        self._sink: SipSink | None = None  # the session's, until the call is over
        self._origin = Origin()
        self._open_rtp = open_rtp
        self._admitted = False
        self._scope = anyio.CancelScope()
        self._send: MemoryObjectSendStream[CallEvent]
        self._inbox: MemoryObjectReceiveStream[CallEvent]
        self._send, self._inbox = anyio.create_memory_object_stream[CallEvent](EVENTS_IN)

    @property
    def name(self) -> str:
        return self.id[:12]  # for log lines (no caller ids there)

    def deliver(self, event: CallEvent) -> None:
        """A dialog event for this call (from the endpoint's receiver: never waits)."""
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            log.warning("sip call %s: %s dropped (events not read)", self.name, type(event))
        except anyio.ClosedResourceError:
            pass  # the call is over

    def end(self, reason: str) -> None:
        """End the call (the first reason given is the one reported)."""
        if self.reason is None:
            self.reason = reason
        self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                await run_call(self)
        except Exception:  # one call's failure ends that call, never the endpoint
            log.exception("sip call %s failed", self.name)
        finally:
            self._send.close()
            self._inbox.close()
            self.done.set()

    # -- the call's shape (agent.call_loop) ---------------------------------------------------

    async def begin(self) -> Session | None:
        status = self.admission.admit(self.id, self.setup.dialled)
        if status is not None:
            await self.setup.refuse(self, status, "not admitted")
            return None
        self._admitted = True
        try:
            self.rtp, self.rtcp_socket, port = await self._open_rtp()
        except OSError as error:
            await self.setup.refuse(self, 503, str(error))
            return None
        self.negotiated = await self.setup.negotiate(self, port)
        if self.negotiated is None:
            return None
        sent = self.answered_with or make_offer(self._origin, port)  # sip_dial's offer
        self.media = MediaSession(sent, port, self.negotiated)
        self.stream = RtpStream(
            self.negotiated.codec.payload_type,
            remote=(self.negotiated.address, self.negotiated.port),
            ssrc=secrets.randbits(32),
            sequence=secrets.randbits(16),
            timestamp=secrets.randbits(32),
            dtmf=self.negotiated.dtmf,
            symmetric=self.config.symmetric_rtp,
        )
        self.stream.sending = self.negotiated.sending
        media = self.media
        self.rtcp = RtcpLeg(
            self.stream,
            self.rtp,
            self.rtcp_socket,
            lambda: media.negotiated,
            self.name,
            self.media_time,
        )
        self.answered = True
        log.info("sip call %s answered (%s)", self.name, self.negotiated.codec.name)
        sink = self._sink = SipSink(self.stream, self.name, self._transfer)
        session = sink.session = self.admission.new_session(self.id, sink, self.setup.session_id)
        return session

    def media_time(self) -> int:
        """Now in samples at 8 kHz on the call's clock: when RTP and RTCP arrived."""
        return round((self.clock.now() - self._epoch) * RATE)

    def origin(self) -> Origin:
        """A fresh SDP origin at our public address (the call's, from now on)."""
        self._origin = Origin("-", secrets.randbelow(1 << 31), 0, self.public_address)
        return self._origin

    def tasks(self, session: Session) -> Sequence[Task]:
        assert self.rtp is not None
        assert self.stream is not None
        rtp, stream = self.rtp, self.stream
        return [
            ("signalling", lambda: self._signalling(session)),
            ("rtp-in", lambda: self._receive_rtp(rtp, stream, session)),
            ("media-clock", lambda: self._media_clock(rtp, stream, session)),
            *([("rtcp", self.rtcp.run)] if self.rtcp is not None else []),
        ]

    async def finish(self, session: Session | None, failure: Exception | None) -> None:
        sink, self._sink = self._sink, None  # nothing below needs it
        if sink is not None:  # Session -> SipSink -> Session (and -> this call): a cycle
            sink.session = None
        if self.reason is None:  # every end from within names itself: this is from outside
            ended = session.ended if session is not None else None
            self.reason = ended or ("internal" if failure is not None else "server_shutdown")
        with anyio.CancelScope(shield=True):
            if session is not None and self.reason == session.ended:  # the agent hung up
                await self._key_the_rest()
            await self.signalling.hangup(self.id)  # BYE, unless the caller's came first
            await self.setup.close(self)
            if self.rtcp is not None:  # the last report, with RTCP BYE
                await self.rtcp.bye(self.reason or "call ended")
            for sock in (self.rtp, self.rtcp_socket):
                if sock is not None:
                    await sock.aclose()
            if self._admitted:
                await self.admission.release(self.id)
        if self.stream is None:
            log.info("sip call %s ended: %s", self.name, self.reason)
            return
        stats, jitter = self.stream.stats, self.stream.jitter.stats
        log.info(
            "sip call %s ended: %s (RTP: %d packets in, %d out, %d dropped; jitter buffer: "
            "%d late, %d lost, %d underruns, %d overflows)",
            self.name, self.reason, stats.received_packets, stats.sent_packets, stats.dropped,
            jitter.late, jitter.lost, jitter.underrun, jitter.overflow,
        )  # fmt: skip

    async def next_setup_event(self) -> CallEvent | None:
        """The dialog's next event before the call starts (``None``: the call is over)."""
        async for event in self._inbox:
            return event
        return None

    async def _transfer(self, target: str) -> None:
        """The session asks for a transfer: REFER the peer to ``target`` (a ``sip:`` URI,
        or a number or extension at the peer's host)."""
        uri = target if target.startswith(("sip:", "sips:", "tel:")) else None
        uri = uri or f"sip:{target}@{self.peer_host}"
        log.info("sip call %s: transfer by REFER", self.name)
        try:
            await self.signalling.refer(self.id, uri)
        except RuntimeError as error:  # the dialog is not up (any more)
            log.info("sip call %s: no REFER: %s", self.name, error)
            self.deliver(ReferAnswered(self.id, 481, "no dialog"))

    async def _key_the_rest(self) -> None:
        """Digits the agent keyed just before it hung up go out before the BYE, at the media
        clock's pace (:data:`KEYING_S` at most; the caller's side is no longer heard)."""
        stream, rtp = self.stream, self.rtp
        if stream is None or rtp is None:
            return
        start, ticks = self.clock.now(), 0
        with anyio.move_on_after(KEYING_S):
            while stream.keying:
                ticks += 1
                await self.clock.sleep_until(start + ticks * FRAME_S)
                _, packet, peer = stream.tick()
                if packet is not None:
                    try:
                        await rtp.sendto(packet, *peer)
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return

    # -- the tasks ----------------------------------------------------------------------------

    async def _signalling(self, session: Session) -> None:
        async for event in self._inbox:
            match event:
                case DialogEnded(reason=reason):
                    self.reason = "hangup" if reason == "bye" else reason
                    session.end_input()
                    return
                case Reoffer(offer=offer):
                    await self._reoffer(offer)
                case ReferAnswered(status=status) if status >= 300:
                    await session.transfer_result(False, f"refused {status}")
                case ReferNotify(status=status) if status >= 300:
                    await session.transfer_result(False, f"failed {status}")
                case ReferNotify(status=status) if status >= 200:
                    await session.transfer_result(True)
                case DtmfInfo(digit=digit):
                    await session.dtmf(digit)  # checked by the dialog (its rule U18)
                case _:
                    pass

    async def _reoffer(self, offer: bytes) -> None:
        """A re-INVITE or UPDATE from the peer: answered by the call's :class:`MediaSession`
        (hold, unhold, codec or address change, refresh), or refused and nothing changes."""
        assert self.media is not None
        assert self.stream is not None
        answered = self.media.reoffer(offer)
        try:
            if isinstance(answered, SdpError):
                log.info("sip call %s: re-offer refused (%s)", self.name, answered.reason)
                await self.signalling.reject(self.id, answered.status)
                return
            agreed = answered.negotiated
            if answered.changed:  # applied before the answer goes: no RTP of the old media after
                self.stream.renegotiate(
                    agreed.codec.payload_type,
                    remote=(agreed.address, agreed.port),
                    dtmf=agreed.dtmf,
                )
                self.negotiated = agreed
                self.stream.sending = agreed.sending
                log.info("sip call %s: media %s %s", self.name, agreed.codec.name, agreed.direction)
            await self.signalling.answer(self.id, answered.sdp)
        except RuntimeError as error:  # the dialog is not up (any more)
            log.info("sip call %s: re-offer not answered: %s", self.name, error)

    async def _receive_rtp(self, rtp: UDPSocket, stream: RtpStream, session: Session) -> None:
        while True:
            with anyio.move_on_after(self.config.media_timeout_s):
                data, (host, port) = await rtp.receive()
                arrival = self.media_time()
                for event in stream.receive(data, (host, port), arrival):
                    if isinstance(event, Digit):  # RFC 4733: one of the 16 keys
                        await session.dtmf(event.digit)
                continue
            if self.media is not None and self.media.negotiated.direction != "sendrecv":
                continue  # on hold: a phone may send nothing meanwhile
            self.end("media_timeout")
            return

    async def _media_clock(self, rtp: UDPSocket, stream: RtpStream, session: Session) -> None:
        inbound = InboundAudio(AudioFormat("pcm16", RATE))
        start = self.clock.now()
        ticks = 0
        while True:
            ticks += 1
            await self.clock.sleep_until(start + ticks * FRAME_S)
            behind = int((self.clock.now() - start) / FRAME_S) - ticks
            if behind > MAX_BEHIND:
                ticks += behind  # a stall: skip rather than burst
            frame, packet, peer = stream.tick()
            if not stream.sending:
                continue  # held: the caller cannot hear (nothing went out), its side is no turn
            if packet is not None:
                await rtp.sendto(packet, *peer)
            chunk = inbound.convert(frame)
            if chunk is not None:
                await session.push_audio(chunk.pcm)


class Answering:
    """The setup of an inbound call: answer its INVITE (see the module doc)."""

    session_id: str | None = None  # a new one

    def __init__(self, incoming: IncomingCall) -> None:
        self.incoming = incoming
        self.dialled = incoming.dialled

    async def negotiate(self, call: SipCall, port: int) -> Negotiated | None:
        call.peer_host = self.incoming.source[0]
        offer = parse_sdp(self.incoming.offer)
        if isinstance(offer, SdpError):
            await self.refuse(call, offer.status if self.incoming.offer else 488, offer.reason)
            return None
        answered = answer_offer(offer, call.origin(), port)
        if isinstance(answered, SdpError):
            await self.refuse(call, answered.status, answered.reason)
            return None
        answer, negotiated = answered
        call.answered_with = answer
        await call.signalling.ring(call.id)
        return negotiated if await self._wait_for_ack(call, bytes(answer)) else None

    async def refuse(self, call: SipCall, status: int, reason: str) -> None:
        log.info("sip call %s refused with %d: %s", call.name, status, reason)
        call.reason = f"refused_{status}"
        await call.signalling.reject(call.id, status)

    async def close(self, call: SipCall) -> None:
        pass

    async def _wait_for_ack(self, call: SipCall, sdp: bytes) -> bool:
        """Ring ``ring_ms``, answer with ``sdp``, wait for the ACK: ``False`` if the call ended
        first (cancelled while ringing, never ACKed)."""
        with anyio.move_on_after(call.config.ring_ms / 1000):
            if await self._next_setup_event(call) is not None:
                return False
        await call.signalling.answer(call.id, sdp)
        with anyio.move_on_after(ACK_TIMEOUT_S):
            return await self._next_setup_event(call) is None
        call.reason = call.reason or "no_ack"
        return False

    async def _next_setup_event(self, call: SipCall) -> str | None:
        """Until the ACK (``None``) or an event that ends the call (its reason)."""
        while (event := await call.next_setup_event()) is not None:
            match event:
                case CallConfirmed():
                    return None
                case CallCancelled():
                    call.reason = "cancelled"
                    return "cancelled"
                case DialogEnded(reason=reason):
                    call.reason = reason
                    return reason
                case _:
                    pass  # nothing else comes before the ACK
        call.reason = call.reason or "ended"
        return "ended"
