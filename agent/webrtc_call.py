"""WebRTC calls with aiortc, wired to a :class:`~agent.session.Session`.

The thin adapter around :mod:`transports.webrtc`: one :class:`WebRtcCall` per peer connection.

- **Audio in**: the caller's Opus track, decoded by aiortc (48 kHz stereo), goes through
  :class:`~transports.webrtc.InboundFrames` to 16 kHz mono and into the session.
- **Audio out**: :class:`AudioTrackOut` is the track aiortc pulls 20 ms frames from, paced in
  real time, silence between replies. On barge-in the session clears it: everything buffered
  of the interrupted reply is dropped, so the next frame pulled (within 20 ms) is silence.
- **Events**: the data channel the caller opens (any label) carries the JSON events of the
  native protocol (:func:`~transports.webrtc.data_channel_protocol`), so a browser sees what a
  ``/v1/stream`` client sees, and may send ``text``, ``interrupt`` and ``bye``.

A call ends when the caller hangs up (``bye`` on the data channel, closing the peer connection,
``DELETE /v1/webrtc/sessions/{id}``), when ICE fails, when it does not connect within
``connect_timeout_s``, when the caller's audio stops for ``media_timeout_s`` (a browser that
vanished sends nothing, not even a goodbye), when the agent hangs up, or at server shutdown.
``session.ended`` with the reason is the last event; the peer connection is then closed.

Every call runs in the task group of :meth:`WebRtcCalls.run`, which the server's lifespan owns.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence

import aioice.ice
import anyio
import av
import numpy as np
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
from anyio.abc import ObjectSendStream, TaskGroup, TaskStatus

from agent.config.schema import WebRtcConfig
from agent.native_call import NativeSink
from agent.session import CallSink, Session, SessionEvent
from pipeline.errors import ProtocolError, ServerError
from transports.native import Bye, InterruptRequest, NativeProtocol, Outbound, UserText
from transports.webrtc import (
    OPUS_RATE,
    InboundFrames,
    OfferRequest,
    OutboundFrames,
    data_channel_protocol,
)

log = logging.getLogger("voxline.webrtc")

#: after ``session.ended``, how long the peer gets to close the connection itself
CLOSE_GRACE_S = 1.0
NEGOTIATION_TIMEOUT_S = 10.0


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
    """The configured servers; an empty list (not ``None``, which adds a public STUN server)."""
    return [
        RTCIceServer(list(server.urls), server.username, server.credential)
        for server in config.ice_servers
    ]


# -- audio out --------------------------------------------------------------------------------


class AudioTrackOut(MediaStreamTrack):
    """A track of PCM16 mono audio written in any lengths, sent as paced 20 ms frames.

    :meth:`write` queues audio of a generation (at most ``max_seconds``: the session's
    playout writes in real time, a few frames ahead), :meth:`clear` drops a generation's
    queue; aiortc pulls :meth:`recv` to encode and send, one frame per 20 ms of wall time
    (after a stall it goes on from the current time rather than bursting).
    """

    kind = "audio"

    def __init__(self, sample_rate: int = OPUS_RATE, *, max_seconds: float = 2.0) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.frames = OutboundFrames(sample_rate, max_seconds=max_seconds)
        self._time_base = fractions.Fraction(1, sample_rate)
        self._pts = 0
        self._start: float | None = None

    def write(self, generation: int, pcm: bytes) -> None:
        if self.readyState == "live":
            self.frames.push(generation, pcm)

    def clear(self, generation: int | None = None) -> None:
        self.frames.clear(generation)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        due = self._start + self._pts / self.sample_rate
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.1:
            self._start = now - self._pts / self.sample_rate
        pcm, _ = self.frames.next_frame()
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += samples.shape[1]
        return frame


def pcm_of(frame: av.AudioFrame) -> tuple[bytes, int]:
    """A decoded frame as interleaved PCM16 bytes and its channel count."""
    channels = len(frame.layout.channels)
    samples = frame.to_ndarray()
    if frame.format.is_planar:
        samples = samples.T
    if samples.dtype != np.int16:
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    return samples.astype("<i2").tobytes(), channels


# -- events -----------------------------------------------------------------------------------


class DataChannelWriter(ObjectSendStream[Outbound]):
    """Events to the data channel, queued (``backlog`` at most) until the caller opens it.

    Binary items are dropped: they are the protocol's copy of the audio the track sends. Past
    ``max_buffered`` bytes not yet taken by the network (a peer that stopped reading), events
    are dropped and counted.
    """

    def __init__(self, *, backlog: int = 256, max_buffered: int = 1 << 20) -> None:
        self.channel: RTCDataChannel | None = None
        self.max_buffered = max_buffered
        self.dropped = 0
        self._pending: deque[str] = deque(maxlen=backlog)

    def attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        if channel.readyState == "open":
            self._drain()
        else:
            channel.on("open", self._drain)

    def write(self, message: Outbound) -> None:
        if isinstance(message, bytes):
            return
        channel = self.channel
        if channel is None or channel.readyState == "connecting":
            self.dropped += len(self._pending) == self._pending.maxlen
            self._pending.append(message)
        elif channel.readyState == "open" and channel.bufferedAmount <= self.max_buffered:
            channel.send(message)
        else:
            self.dropped += 1

    def _drain(self) -> None:
        pending, self._pending = self._pending, deque(maxlen=self._pending.maxlen)
        for message in pending:
            self.write(message)

    async def send(self, item: Outbound) -> None:
        self.write(item)

    async def aclose(self) -> None:
        pass


class WebRtcSink(CallSink):
    """What the session says: audio to the track, events (as ``/v1/stream``'s) to the channel."""

    def __init__(
        self, protocol: NativeProtocol, track: AudioTrackOut, writer: DataChannelWriter
    ) -> None:
        self.track = track
        self._events = NativeSink(protocol, writer)

    @property
    def output_rate(self) -> int:
        return self.track.sample_rate

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        await self._events.send_audio(generation, pcm)  # audio.start, and counts for heard
        self.track.write(generation, pcm)

    async def end_audio(self, generation: int) -> None:
        await self._events.end_audio(generation)

    async def clear_audio(self, generation: int) -> None:
        self.track.clear(generation)

    async def send_event(self, event: SessionEvent) -> None:
        await self._events.send_event(event)


# -- one call ---------------------------------------------------------------------------------


class WebRtcCall:
    """One peer connection and its session: :meth:`negotiate`, then :meth:`run` to the end."""

    def __init__(
        self,
        session_id: str,
        config: WebRtcConfig,
        new_session: Callable[[CallSink], Session],
    ) -> None:
        self.id = session_id
        self.config = config
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(config)))
        self.protocol = data_channel_protocol(session_id)
        self.track = AudioTrackOut()
        self.writer = DataChannelWriter()
        self.sink = WebRtcSink(self.protocol, self.track, self.writer)
        self.session: Session | None = None
        self.remote: MediaStreamTrack | None = None
        self.reason: str | None = None
        self._new_session = new_session
        self._scope = anyio.CancelScope()
        self._connected = anyio.Event()
        self._peer_gone = anyio.Event()
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
        try:
            with self._scope:
                await self._run()
        except Exception:  # one call's failure ends that call, never the server's task group
            log.exception("webrtc call %s failed", self.id[:8])
            self.reason = self.reason or "internal"
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()
            on_end()

    async def _run(self) -> None:
        with anyio.move_on_after(self.config.connect_timeout_s):
            await self._connected.wait()
        if not self._connected.is_set():
            self.end("connect_timeout")
            return
        session = self.session = self._new_session(self.sink)
        async with anyio.create_task_group() as tg:
            if self.remote is not None:
                tg.start_soon(self._receive, self.remote, session)
            await session.run()
            self.end(session.ended or "ended")

    async def _receive(self, track: MediaStreamTrack, session: Session) -> None:
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

    async def _close(self) -> None:
        reason = self.reason or "ended"
        self.protocol.close(reason)
        self._flush()
        if not self._peer_gone.is_set() and self.writer.channel is not None:
            with anyio.move_on_after(CLOSE_GRACE_S):  # let session.ended reach the caller
                await self._peer_gone.wait()
        with anyio.move_on_after(5):
            await self.pc.close()
        self.track.stop()
        stats = self.track.frames.statistics()
        log.info(
            "webrtc call %s ended: %s (%d frames sent, %d silent, %d events dropped)",
            self.id[:8], reason, stats.frames, stats.silent_frames, self.writer.dropped,
        )  # fmt: skip

    # -- aiortc callbacks (on the event loop, in aiortc's tasks) -------------------------------

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

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.protocol.send_error("bad_message", "send audio on the track, not the channel")
            events = []
        else:
            events = self.protocol.receive_text(message)
        for event in events:
            match event:
                case UserText(text=text) if self.session is not None:
                    self.session.user_text(text)
                case InterruptRequest() if self.session is not None:
                    self.session.interrupt()
                case Bye():
                    self.end("bye")
        self._flush()

    def _flush(self) -> None:
        for message in self.protocol.data_to_send():
            self.writer.write(message)


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
    ) -> tuple[str, str]:
        """Start a call for ``offer``: its session id and the answer's SDP.

        ``ProtocolError`` when aiortc cannot use the offer; ``on_end`` runs once the call is
        over (not when this raises).
        """
        if self._tg is None:
            raise ServerError("the WebRTC calls are not running")
        session_id = uuid.uuid4().hex
        call = WebRtcCall(session_id, self.config, lambda sink: new_session(session_id, sink))
        try:
            with anyio.fail_after(NEGOTIATION_TIMEOUT_S):
                sdp = await call.negotiate(offer)
        except (ValueError, InvalidAccessError, InvalidStateError) as error:
            await call.pc.close()
            raise ProtocolError(f"the offer could not be answered: {error}") from None
        except BaseException:
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
