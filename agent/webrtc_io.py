"""A WebRTC call's I/O at aiortc's boundary: the outgoing track, the data channel's writer,
and the session's sink over both (:class:`WebRtcSink`).

:class:`AudioTrackOut` is the track aiortc pulls 20 ms frames from. It holds no clock and no
big buffer of its own: the session's playout writes reply audio a bounded ``lead`` ahead of
real time into its small jitter queue (:class:`~transports.webrtc.OutboundFrames`), and
:meth:`AudioTrackOut.feed`, one of the call's tasks, is the media clock that makes one frame
due every 20 ms. aiortc's sender takes each due frame (silence between replies), so what was
taken is what went out, which is what a barge-in reports as heard.

:class:`DataChannelWriter` sends the native protocol's events on the data channel the caller
opened, without waiting (SCTP buffers): queued until it opens, dropped and counted past a
bound when the peer stops reading.
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCDataChannel
from aiortc.mediastreams import MediaStreamError
from anyio.abc import ObjectSendStream

from agent.native_call import NativeSink
from agent.session_control import CallControls
from agent.session_events import CallSink, SessionEvent
from pipeline.clock import WallClock
from transports.native import NativeProtocol, Outbound
from transports.webrtc import FRAME_MS, JITTER_S, OPUS_RATE, OutboundFrames

#: frames the feed lets aiortc fall behind by before it skips ticks (a stalled sender then
#: catches up by at most this much rather than bursting a backlog)
MAX_DUE = 10


class AudioTrackOut(MediaStreamTrack):
    """PCM16 mono audio written in any lengths, sent as 20 ms frames on :meth:`feed`'s ticks.

    :meth:`write` queues audio of a generation (``jitter_s`` at most: past that the oldest is
    dropped and counted), :meth:`clear` drops a generation's queue and refuses its late audio
    (a barge-in: the next frame is silent). :meth:`recv` (aiortc's) waits for the next tick;
    the frames' ``pts`` run on without gaps.
    """

    kind = "audio"

    def __init__(self, sample_rate: int = OPUS_RATE, *, jitter_s: float = JITTER_S) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.frames = OutboundFrames(sample_rate, max_seconds=jitter_s)
        #: ticks skipped because aiortc was :data:`MAX_DUE` frames behind
        self.skipped = 0
        self._time_base = fractions.Fraction(1, sample_rate)
        self._pts = 0
        self._due = 0
        self._tick = asyncio.Event()

    def write(self, generation: int, pcm: bytes) -> None:
        if self.readyState == "live":
            self.frames.push(generation, pcm)

    def clear(self, generation: int | None = None) -> None:
        self.frames.clear(generation)

    def sent_samples(self, generation: int) -> int:
        """Samples of ``generation`` handed to aiortc to send."""
        return self.frames.sent_samples(generation)

    async def feed(self, clock: WallClock, *, until_empty: bool = False) -> None:
        """Make a frame due every 20 ms of ``clock``, until cancelled (the call's media clock),
        or with ``until_empty`` until aiortc has taken all the queued audio (a call's end).

        After a stall the missed ticks come at once (the playout catches up the same way, so
        the jitter queue stays small), at most :data:`MAX_DUE` of them.
        """
        period = FRAME_MS / 1000
        start = clock.now()
        ticks = 0
        while not (until_empty and not self.frames.buffered_samples and not self._due):
            ticks += 1
            await clock.sleep_until(start + ticks * period)
            if self._due < MAX_DUE:
                self._due += 1
            else:
                self.skipped += 1
            self._tick.set()

    async def recv(self) -> av.AudioFrame:
        while not self._due and self.readyState == "live":
            self._tick.clear()
            await self._tick.wait()
        if self.readyState != "live":
            raise MediaStreamError
        self._due -= 1
        pcm, _ = self.frames.next_frame()
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += samples.shape[1]
        return frame

    def stop(self) -> None:
        super().stop()
        self._tick.set()  # a recv waiting for a tick ends


def pcm_of(frame: av.AudioFrame) -> tuple[bytes, int]:
    """A decoded frame as interleaved PCM16 bytes and its channel count."""
    channels = len(frame.layout.channels)
    samples = frame.to_ndarray()
    if frame.format.is_planar:
        samples = samples.T
    if samples.dtype != np.int16:
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    return samples.astype("<i2").tobytes(), channels


# -- events -------------------------------------------------------------------------------------


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

    #: digits go to the channel as ``dtmf`` events (agent.session_events.DigitSink)
    keys_digits = True

    def __init__(
        self, protocol: NativeProtocol, track: AudioTrackOut, writer: DataChannelWriter
    ) -> None:
        self.track = track
        self._events = NativeSink(protocol, writer)

    @property
    def session(self) -> CallControls | None:
        """The call's session, once it has started (a transfer's refusal goes back to it)."""
        return self._events.session

    @session.setter
    def session(self, session: CallControls | None) -> None:
        self._events.session = session

    @property
    def output_rate(self) -> int:
        return self.track.sample_rate

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        await self._events.send_audio(generation, pcm)  # audio.start, positions for playback
        self.track.write(generation, pcm)

    async def end_audio(self, generation: int) -> None:
        await self._events.end_audio(generation)

    async def clear_audio(self, generation: int) -> int:
        """Drop what the track still queues of ``generation``; how much of it was heard: what
        the track sent, or less when the caller's last ``playback`` report says so."""
        self.track.clear(generation)
        sent = self.track.sent_samples(generation)
        reported = await self._events.clear_audio(generation)
        return sent if reported is None else min(sent, reported)

    async def send_event(self, event: SessionEvent) -> None:
        await self._events.send_event(event)
