"""WebRTC calls with aiortc, wired to a :class:`~agent.session.Session`.

The thin adapter around :mod:`transports.webrtc`: one :class:`WebRtcCall` per peer connection,
run in the one call shape of :mod:`agent.call_loop` (the session's task group holds the call's
readers and its media clock).

- **Audio in**: the caller's Opus track, decoded by aiortc (48 kHz stereo), goes through
  :class:`~transports.webrtc.InboundFrames` to 16 kHz mono and into the session.
- **Audio out**: :class:`~agent.webrtc_io.AudioTrackOut` is the track aiortc pulls 20 ms
  frames from, one per tick of the call's media clock, silence between replies. The session's
  playout writes it a bounded ``lead`` ahead of real time, so the track keeps only a small
  jitter queue. On barge-in the session clears it: what it queues of the interrupted reply is
  dropped, so the next frame sent (within 20 ms) is silence, and what was heard is what the
  track sent, or less if the caller's ``playback`` reports say so.
- **Events**: the data channel the caller opens (any label) carries what the call's
  :class:`ChannelEvents` speaks: OpenAI's Realtime events for ``/v1/realtime/calls``
  (:mod:`agent.realtime_webrtc`), otherwise (:class:`NativeEvents`) the JSON events of the
  native protocol (:func:`~transports.webrtc.data_channel_protocol`), so a browser sees what a
  ``/v1/stream`` client sees, and may send ``text``, ``interrupt``, ``commit``, ``playback``
  (how much of a reply it has played: a barge-in keeps only that), ``dtmf`` (keypad digits:
  aiortc drops RFC 4733 telephone events on the track, docs/webrtc.md) and ``bye``. A caller whose
  offer said ``"transfer": true`` gets ``transfer`` events and answers ``transfer.result``
  (ok: the call ends ``transferred``); for others a transfer fails at once (``unsupported``)
  and the agent says so.

A call ends when the caller hangs up (``bye`` on the data channel, closing the data channel or
the peer connection, ``DELETE /v1/webrtc/sessions/{id}``), when ICE fails, when it does not
connect within ``connect_timeout_s``, when the caller's audio stops for ``media_timeout_s`` (a
browser that vanished sends nothing, not even a goodbye), when the agent hangs up, or at server
shutdown.
``session.ended`` with the reason is the last event; the peer connection is then closed.

Every call runs in the task group of :meth:`WebRtcCalls.run`, which the server's lifespan owns.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import aioice.ice
import anyio
import av
from aiortc import (
    InvalidAccessError,
    InvalidStateError,
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from anyio.abc import TaskGroup, TaskStatus

from agent.call_loop import Task, run_call
from agent.config.schema import WebRtcConfig
from agent.metrics import METRICS
from agent.session import Session
from agent.session_events import CallSink
from agent.turn_credentials import IceServers
from agent.webrtc_io import AudioTrackOut, DataChannelWriter, WebRtcSink, pcm_of
from pipeline.clock import MonotonicClock, WallClock
from pipeline.errors import ProtocolError, ServerError
from pipeline.events import AudioFrame
from transports.native import (
    Bye,
    CommitRequest,
    Hello,
    InterruptRequest,
    Keys,
    PeerError,
    Playback,
    TransferOutcome,
    UserText,
)
from transports.webrtc import OPUS_RATE, InboundFrames, OfferRequest, data_channel_protocol

log = logging.getLogger("voxline.webrtc")

#: after ``session.ended``, how long the track gets to send what it queues (the playout's
#: lead) and the peer to close the connection itself
CLOSE_GRACE_S = 1.0
NEGOTIATION_TIMEOUT_S = 10.0
#: data channel messages waiting for the call's reader (see :class:`WebRtcCall`)
EVENTS_IN = 64


# -- host candidates --------------------------------------------------------------------------

_aioice_host_addresses = aioice.ice.get_host_addresses
_host_addresses: tuple[str, ...] = ()


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on ``addresses`` only (empty: aioice's choice, which is every
    interface but loopback). Process-wide: aioice has no per-connection setting."""
    global _host_addresses
    _host_addresses = tuple(addresses)
    aioice.ice.get_host_addresses = _configured_host_addresses


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if not _host_addresses:
        return _aioice_host_addresses(use_ipv4, use_ipv6)
    return [a for a in _host_addresses if (use_ipv6 if ":" in a else use_ipv4)]


def ice_servers(config: WebRtcConfig) -> list[RTCIceServer]:
    """The configured servers, TURN credentials made afresh (:mod:`agent.turn_credentials`);
    an empty list (not ``None``, which adds a public STUN server)."""
    return [
        RTCIceServer(list(server.urls), server.username, server.credential)
        for server in IceServers(config, os.environ).fresh()
    ]


# -- what the data channel speaks ----------------------------------------------------------------


class ChannelEvents(Protocol):
    """A call's data channel protocol, as :class:`WebRtcCall` runs it: the session's sink (its
    audio to the track, its events to the channel), the tasks that read the channel, and the
    last words when the call ends."""

    @property
    def sink(self) -> CallSink: ...

    def start(self, session: Session) -> None:
        """The session was made (with :attr:`sink`)."""
        ...

    def tasks(
        self, session: Session, inbox: AsyncIterator[str | bytes], end: Callable[[str], None]
    ) -> Sequence[Task]:
        """The channel's tasks in the session's task group: reading ``inbox`` (the channel's
        messages; ``end(reason)`` hangs up) and any the protocol needs."""
        ...

    def close(self, reason: str) -> None:
        """The call is over: queue the protocol's last events to the channel; the sink lets go
        of the session (else it and the session are a cycle the collector frees only later)."""
        ...


#: what a call's events are made of: its id, its outgoing track and the channel's writer
EventsFactory = Callable[[str, AudioTrackOut, DataChannelWriter], ChannelEvents]


class NativeEvents:
    """The native protocol on the channel (:func:`~transports.webrtc.data_channel_protocol`):
    a browser sees what a ``/v1/stream`` client sees (the module doc)."""

    def __init__(
        self, session_id: str, track: AudioTrackOut, writer: DataChannelWriter, *, transfer: bool
    ) -> None:
        self.protocol = data_channel_protocol(session_id, track.sample_rate, transfer=transfer)
        self.writer = writer
        self._sink = WebRtcSink(self.protocol, track, writer)

    @property
    def sink(self) -> CallSink:
        return self._sink

    def start(self, session: Session) -> None:
        self._sink.session = session

    def tasks(
        self, session: Session, inbox: AsyncIterator[str | bytes], end: Callable[[str], None]
    ) -> Sequence[Task]:
        return [("events-in", lambda: self._read(session, inbox, end))]

    def close(self, reason: str) -> None:
        self.protocol.close(reason)
        self._flush()
        self._sink.session = None  # Session -> WebRtcSink -> Session: a cycle once it is over

    async def _read(
        self, session: Session, inbox: AsyncIterator[str | bytes], end: Callable[[str], None]
    ) -> None:
        self._flush()  # session.started
        async for message in inbox:
            if isinstance(message, bytes):
                self.protocol.send_error("bad_message", "send audio on the track, not the channel")
                events = []
            else:
                events = self.protocol.receive_text(message)
            for event in events:
                match event:
                    case UserText(text=text):
                        await session.user_text(text)
                    case InterruptRequest():
                        await session.interrupt()
                    case CommitRequest():
                        await session.commit_turn()
                    case Keys(digits=digits):  # the channel's: aiortc drops RFC 4733 events
                        for digit in digits:
                            await session.dtmf(digit)
                    case Bye():
                        end("bye")
                    case TransferOutcome(ok=ok, reason=reason):
                        await session.transfer_result(ok, reason)
                    case Playback():
                        pass  # the protocol keeps the position; clear_audio reports it
                    case Hello() | AudioFrame() | PeerError():
                        pass  # the channel opens already greeted; audio comes on the track
            self._flush()

    def _flush(self) -> None:
        for message in self.protocol.data_to_send():
            self.writer.write(message)


# -- one call ---------------------------------------------------------------------------------


class WebRtcCall:
    """One peer connection and its session: :meth:`negotiate`, then :meth:`run` to the end.
    ``release``: what the call holds beyond its session (a room seat), given back as it
    finishes, before the connection's close.

    The call is a :class:`~agent.call_loop.CallConnection`: ``begin`` waits for ICE to connect
    and makes the session; its tasks, in the session's task group, are its
    :class:`ChannelEvents`' (``events-in``: the data channel's reader), the caller's track
    reader (``audio-in``) and the outgoing track's media clock (``audio-out``); ``finish``
    has the events say their last (``session.ended``) and closes the connection.
    aiortc's callbacks only record (the connection state) or queue (data channel messages,
    :data:`EVENTS_IN` at most: a peer flooding the channel loses its own messages, counted as
    ``voxline_errors{where="webrtc",kind="events_not_read"}``).
    """

    def __init__(
        self,
        session_id: str,
        config: WebRtcConfig,
        new_session: Callable[[CallSink], Session],
        *,
        clock: WallClock | None = None,
        transfer: bool = False,
        release: Callable[[], Awaitable[None]] | None = None,
        events: EventsFactory | None = None,
        output_rate: int = OPUS_RATE,
    ) -> None:
        self.id = session_id
        self.config = config
        #: the outgoing track's media clock
        self.clock = clock or MonotonicClock()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(config)))
        self.track = AudioTrackOut(output_rate)
        self.writer = DataChannelWriter()
        if events is None:
            self.events: ChannelEvents = NativeEvents(
                session_id, self.track, self.writer, transfer=transfer
            )
        else:
            self.events = events(session_id, self.track, self.writer)
        self.remote: MediaStreamTrack | None = None
        self.reason: str | None = None
        #: data channel messages dropped because :data:`EVENTS_IN` were waiting
        self.events_dropped = 0
        self._new_session = new_session
        self._release = release
        self._scope = anyio.CancelScope()
        self._connected = anyio.Event()
        self._peer_gone = anyio.Event()
        self._messages, self._inbox = anyio.create_memory_object_stream[str | bytes](EVENTS_IN)
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("datachannel", self._on_channel)

    async def negotiate(self, offer: OfferRequest) -> str:
        """Apply the offer; the answer's SDP (host candidates included: no trickle)."""
        await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        opus = [
            codec
            for codec in RTCRtpSender.getCapabilities("audio").codecs
            if codec.mimeType.lower() == "audio/opus"
        ]
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "audio":
                transceiver.setCodecPreferences(opus)
                if offer.summary.caller_sends:
                    self.remote = transceiver.receiver.track
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = self.pc.localDescription
        assert answer is not None
        return answer.sdp

    def end(self, reason: str) -> None:
        """End the call (the first reason given is the one reported)."""
        if self.reason is None:
            self.reason = reason
        self._scope.cancel()

    async def run(self, on_end: Callable[[], None]) -> None:
        """The call, from the connection to its close (:func:`~agent.call_loop.run_call`);
        ``on_end`` runs once it is over."""
        try:
            with self._scope:
                await run_call(self)
        except Exception:  # one call's failure ends that call, never the server's task group
            log.exception("webrtc call %s failed", self.id[:8])
        finally:
            self.close_inbox()
            on_end()

    def close_inbox(self) -> None:
        """No more data channel messages are read (the call is over, or never ran)."""
        self._messages.close()
        self._inbox.close()

    # -- the call's shape (agent.call_loop) ---------------------------------------------------

    async def begin(self) -> Session | None:
        with anyio.move_on_after(self.config.connect_timeout_s):
            await self._connected.wait()
        if not self._connected.is_set():
            self.end("connect_timeout")
            return None
        session = self._new_session(self.events.sink)
        self.events.start(session)
        return session

    def tasks(self, session: Session) -> Sequence[Task]:
        tasks: list[Task] = [
            *self.events.tasks(session, self._inbox, self.end),
            ("audio-out", lambda: self.track.feed(self.clock)),
        ]
        remote = self.remote
        if remote is not None:
            tasks.append(("audio-in", lambda: self._read_audio(remote, session)))
        return tasks

    async def finish(self, session: Session | None, failure: Exception | None) -> None:
        if self.reason is None:
            ended = session.ended if session is not None else None
            self.reason = ended or ("internal" if failure is not None else "ended")
        with anyio.CancelScope(shield=True):
            try:
                if self._release is not None:
                    await self._release()  # a room: the other member's call ends now
            finally:
                await self._close(self.reason)

    # -- the tasks ----------------------------------------------------------------------------

    async def _read_audio(self, track: MediaStreamTrack, session: Session) -> None:
        frames = InboundFrames()
        while True:
            frame: object = None
            with anyio.move_on_after(self.config.media_timeout_s):
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    self.end("hangup")
                    return
            if frame is None:
                self.end("media_timeout")
                return
            assert isinstance(frame, av.AudioFrame)
            pcm, channels = pcm_of(frame)
            chunk = frames.convert(pcm, channels, frame.sample_rate)
            if chunk is not None:
                await session.push_audio(chunk.pcm)

    async def _close(self, reason: str) -> None:
        self.events.close(reason)
        if not self._peer_gone.is_set():
            with anyio.move_on_after(CLOSE_GRACE_S):  # the last words, and session.ended
                await self.track.feed(self.clock, until_empty=True)  # a few frames: the lead
                if self.writer.channel is not None:
                    await self._peer_gone.wait()
        with anyio.move_on_after(5):
            await self.pc.close()
        self.track.stop()
        stats = self.track.frames.statistics()
        log.info(
            "webrtc call %s ended: %s (%d frames sent, %d silent, %d events dropped, "
            "%d events not read)",
            self.id[:8], reason, stats.frames, stats.silent_frames, self.writer.dropped,
            self.events_dropped,
        )  # fmt: skip

    # -- aiortc callbacks (on the event loop, in aiortc's tasks): record or queue, no more ----

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            self._peer_gone.set()
            self.end("ice_failed" if state == "failed" else "hangup")

    def _on_channel(self, channel: RTCDataChannel) -> None:
        if self.writer.channel is not None:
            return  # one event channel per call; others are ignored
        self.writer.attach(channel)
        channel.on("message", self._on_message)
        channel.on("close", lambda: self.end("hangup"))

    def _on_message(self, message: str | bytes) -> None:
        try:
            self._messages.send_nowait(message)
        except anyio.WouldBlock:
            self.events_dropped += 1
            METRICS.error("webrtc", "events_not_read")
        except anyio.ClosedResourceError:
            pass  # the call is over


# -- every call of a server -------------------------------------------------------------------


class WebRtcCalls:
    """The server's WebRTC calls, owned by the task group of :meth:`run`."""

    def __init__(self, config: WebRtcConfig) -> None:
        self.config = config
        self._calls: dict[str, WebRtcCall] = {}
        self._tg: TaskGroup | None = None
        use_host_addresses(config.host_addresses)
        logging.getLogger("aioice").setLevel(logging.WARNING)  # a line per connectivity check

    def __len__(self) -> int:
        return len(self._calls)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the calls until cancelled (server shutdown), then end them all."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
                for call in list(self._calls.values()):
                    call.end("server_shutdown")

    async def answer(
        self,
        offer: OfferRequest,
        new_session: Callable[[str, CallSink], Session],
        on_end: Callable[[], None],
        *,
        release: Callable[[], Awaitable[None]] | None = None,
        events: EventsFactory | None = None,
        output_rate: int = OPUS_RATE,
    ) -> tuple[str, str]:
        """Start a call for ``offer``: its session id and the answer's SDP.

        ``ProtocolError`` when aiortc cannot use the offer; ``on_end`` runs once the call is
        over, ``release`` as it finishes (:class:`WebRtcCall`); neither when this raises.
        ``events``: what the data channel speaks (the native protocol when ``None``);
        ``output_rate``: the outgoing track's (the session's output) sample rate.
        """
        if self._tg is None:
            raise ServerError("the WebRTC calls are not running")
        session_id = uuid.uuid4().hex
        call = WebRtcCall(
            session_id,
            self.config,
            lambda sink: new_session(session_id, sink),
            transfer=offer.transfer,
            release=release,
            events=events,
            output_rate=output_rate,
        )
        try:
            with anyio.fail_after(NEGOTIATION_TIMEOUT_S):
                sdp = await call.negotiate(offer)
        except (ValueError, InvalidAccessError, InvalidStateError) as error:
            call.close_inbox()
            await call.pc.close()
            raise ProtocolError(f"the offer could not be answered: {error}") from None
        except BaseException:
            call.close_inbox()
            with anyio.CancelScope(shield=True):
                await call.pc.close()
            raise

        def finished() -> None:
            self._calls.pop(session_id, None)
            on_end()

        self._calls[session_id] = call
        self._tg.start_soon(call.run, finished, name=f"webrtc call {session_id[:8]}")
        return session_id, sdp

    def hang_up(self, session_id: str) -> bool:
        """End the call ``session_id``; ``False`` if there is none (or it is ending)."""
        call = self._calls.get(session_id)
        if call is None or call.reason is not None:
            return False
        call.end("hangup")
        return True
