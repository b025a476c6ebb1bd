"""Realtime over WebRTC: OpenAI's Realtime events on a WebRTC call's data channel.

What a call made with ``POST /v1/realtime/calls`` (:mod:`agent.realtime_webrtc_route`) speaks:
a :class:`~agent.webrtc_call.WebRtcCall` whose :class:`~agent.webrtc_call.ChannelEvents` are
:class:`RealtimeEvents`. The mapping of the API onto the session is the ``/v1/realtime``
WebSocket's, the same :class:`~transports.realtime.RealtimeProtocol` and
:class:`~agent.realtime_call.RealtimeSink`; only where the audio goes differs, as it does
for OpenAI's WebRTC calls:

- **Audio in** comes on the caller's Opus track (the call's ``audio-in`` task), not as
  ``input_audio_buffer.append`` events; ``input_audio_buffer.commit`` ends the turn with the
  audio the track brought so far (there is no appended buffer to measure: a commit with no
  speech completes its item with an empty transcript).
- **Audio out** goes to the outgoing track at 24 kHz (the API's PCM rate, which the session
  speaks at), not as ``response.output_audio.delta`` events: those are dropped on their way to
  the channel (the protocol still counts the audio each item carries, for
  ``conversation.item.truncate``). Transcript deltas and every other event go out as on the
  WebSocket.
- ``output_audio_buffer.started`` goes out when a response's first audio goes to the track,
  ``output_audio_buffer.stopped`` once the track has sent all of it (after its
  ``response.done``), ``output_audio_buffer.cleared`` when a barge-in or the client's
  ``output_audio_buffer.clear`` drops what it still held (:class:`AudioBuffers`).
- What the caller heard of an interrupted reply is what the track sent: the session keeps that
  much of the reply's text, as OpenAI truncates a WebRTC call's item by itself.

The channel is the first one the caller opens (OpenAI's clients name it ``oai-events``).
``session.created`` is its first event. The call ends when the caller closes the channel or
the peer connection, with ``POST /v1/realtime/calls/{id}/hangup``, when the agent hangs up
(the peer connection is closed), or at the WebRTC call's other ends (:mod:`agent.webrtc_call`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import msgspec

from agent.call_loop import Task
from agent.realtime_call import OUTPUT_RATE, RealtimeSink
from agent.session import Session
from agent.session_events import Interrupted, SessionEvent
from agent.webrtc_io import AudioTrackOut, DataChannelWriter
from agent.ws_io import Message
from pipeline.clock import MonotonicClock, WallClock
from pipeline.events import BYTES_PER_SAMPLE
from transports.realtime import RealtimeProtocol, RealtimeState
from transports.realtime_events import Ids
from transports.realtime_inbound import CommitRequested, RealtimeEvent
from transports.webrtc import FRAME_MS

__all__ = ["AudioBuffers", "RealtimeEvents", "TrackSink"]

log = logging.getLogger("voxline.realtime")

#: the events of a call's audio that OpenAI sends on WebRTC in its place
AUDIO_DELTA = "response.output_audio.delta"
CLEARED = "output_audio_buffer.cleared"
COMMIT = "input_audio_buffer.commit"

_encoder = msgspec.json.Encoder()


class _Head(msgspec.Struct):
    """What :class:`AudioBuffers` reads of a server event (the rest is skipped)."""

    type: str
    response_id: str | None = None


_head = msgspec.json.Decoder(_Head)


def _kind(message: str) -> str | None:
    """The ``type`` of a client event (``None``: not an event; the protocol will say so)."""
    try:
        return _head.decode(message).type
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # (bench/fuzz)
        return None


class AudioBuffers:
    """The server events of a call whose audio is on a track, sans-I/O.

    :meth:`outgoing` takes each event the protocol sends and returns what goes on the channel:
    audio deltas are dropped, a response's first one turned into ``output_audio_buffer.started``.
    :meth:`stopped` and :meth:`cleared` are the track's news (all of a reply's audio was sent;
    what was left of it was dropped): the event, if that reply's audio had started and has not
    already stopped or been cleared. ``protocol`` tells which reply (generation) a response is.
    """

    def __init__(self, protocol: RealtimeProtocol, seed: str) -> None:
        self.protocol = protocol
        #: the reply whose audio the sink is sending (for a response the protocol has already
        #: ended: its last delta comes as it ends)
        self.sending: int | None = None
        self._ids = Ids(seed)
        #: replies whose audio started and is not over, and their response ids
        self._playing: dict[int, str] = {}

    def outgoing(self, message: str) -> list[str]:
        try:
            head = _head.decode(message)
        except msgspec.DecodeError:  # pragma: no cover - the protocol sends JSON objects
            return [message]
        if head.type == AUDIO_DELTA and head.response_id is not None:
            generation = self.protocol.conversation.find(head.response_id)
            generation = self.sending if generation is None else generation
            if generation is None or generation in self._playing:
                return []
            self._playing[generation] = head.response_id
            return self._event("output_audio_buffer.started", head.response_id)
        if head.type == CLEARED:  # the client's output_audio_buffer.clear: the protocol said so
            self._playing = {g: r for g, r in self._playing.items() if r != head.response_id}
        return [message]

    def stopped(self, generation: int) -> list[str]:
        response_id = self._playing.pop(generation, None)
        return (
            [] if response_id is None else self._event("output_audio_buffer.stopped", response_id)
        )

    def cleared(self, generation: int) -> list[str]:
        response_id = self._playing.pop(generation, None)
        return [] if response_id is None else self._event(CLEARED, response_id)

    def _event(self, kind: str, response_id: str) -> list[str]:
        if self.protocol.state is RealtimeState.CLOSED:
            return []
        event = {"type": kind, "event_id": self._ids.next("event"), "response_id": response_id}
        return [_encoder.encode(event).decode()]


class TrackSink:
    """The session's sink: what :class:`~agent.realtime_call.RealtimeSink` makes of it, with
    the reply audio to the track (see the module doc). ``write`` sends events to the channel;
    ``clock`` paces :meth:`watch_track`."""

    def __init__(
        self,
        realtime: RealtimeSink,
        track: AudioTrackOut,
        buffers: AudioBuffers,
        write: Callable[[str], None],
        clock: WallClock,
    ) -> None:
        self.realtime = realtime
        self.track = track
        self.buffers = buffers
        self.clock = clock
        self._write = write
        #: samples of each reply written to the track; the replies whose audio is all written
        #: and not all sent yet (``output_audio_buffer.stopped`` is due when it is)
        self._written: dict[int, int] = {}
        self._draining: dict[int, int] = {}
        self._drain = anyio.Event()
        #: replies cleared from the track whose ``Interrupted`` has not been sent yet
        self._clearing: set[int] = set()

    @property
    def output_rate(self) -> int:
        return OUTPUT_RATE

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        self.buffers.sending = generation
        await self.realtime.send_audio(generation, pcm)  # the events: deltas become started
        self.track.write(generation, pcm)
        samples = len(pcm) // BYTES_PER_SAMPLE
        self._written[generation] = self._written.get(generation, 0) + samples

    async def end_audio(self, generation: int) -> None:
        self.buffers.sending = generation
        await self.realtime.end_audio(generation)
        self._draining[generation] = self._written.pop(generation, 0)
        self._drain.set()

    async def clear_audio(self, generation: int) -> int:
        """Drop what the track still holds of ``generation``; what it sent was heard.
        ``output_audio_buffer.cleared`` follows the ``Interrupted`` the session sends next (after
        ``speech_started`` and the response's end, as OpenAI orders them)."""
        self.track.clear(generation)
        self._written.pop(generation, None)
        self._draining.pop(generation, None)
        self._clearing.add(generation)
        await self.realtime.clear_audio(generation)
        return self.track.sent_samples(generation)

    async def send_event(self, event: SessionEvent) -> None:
        await self.realtime.send_event(event)
        if isinstance(event, Interrupted) and event.generation in self._clearing:
            self._clearing.discard(event.generation)
            for message in self.buffers.cleared(event.generation):
                self._write(message)

    async def watch_track(self) -> None:
        """``output_audio_buffer.stopped`` for each ended reply once the track has sent it
        all (it sends in real time: checked every frame while one is due)."""
        while True:
            await self._drain.wait()
            for generation, written in list(self._draining.items()):
                if self.track.sent_samples(generation) >= written:
                    del self._draining[generation]
                    for message in self.buffers.stopped(generation):
                        self._write(message)
            if self._draining:
                await self.clock.sleep_until(self.clock.now() + FRAME_MS / 1000)
            else:
                self._drain = anyio.Event()


class RealtimeEvents:
    """A WebRTC call's :class:`~agent.webrtc_call.ChannelEvents` for the Realtime API.

    ``make_sink(sender)``: the call's :class:`~agent.realtime_call.RealtimeSink`, sending
    through ``sender`` (this object: its events go through :class:`AudioBuffers` to the
    channel); ``seed``: the event ids of :class:`AudioBuffers` (not the protocol's seed).
    """

    def __init__(
        self,
        protocol: RealtimeProtocol,
        track: AudioTrackOut,
        writer: DataChannelWriter,
        make_sink: Callable[[RealtimeEvents], RealtimeSink],
        *,
        seed: str,
        clock: WallClock | None = None,
    ) -> None:
        self.protocol = protocol
        self.writer = writer
        self.buffers = AudioBuffers(protocol, seed)
        self.realtime = make_sink(self)
        self._sink = TrackSink(
            self.realtime, track, self.buffers, writer.write, clock or MonotonicClock()
        )

    @property
    def sink(self) -> TrackSink:
        return self._sink

    def start(self, session: Session) -> None:
        self.realtime.session = session

    def tasks(
        self, session: Session, inbox: AsyncIterator[str | bytes], end: Callable[[str], None]
    ) -> Sequence[Task]:
        return [("events-in", lambda: self._read(inbox)), ("audio-stopped", self._sink.watch_track)]

    def close(self, reason: str) -> None:
        log.info("realtime webrtc call ended: %s", reason)
        for message in self.protocol.data_to_send():
            self._pass(message)
        self.protocol.close()
        self.realtime.session = None  # Session -> its sink -> Session: a cycle once it is over

    async def send(self, item: Message, /) -> None:
        """The sink's outbox: one protocol event, on its way to the channel."""
        if isinstance(item, str):
            self._pass(item)

    def _pass(self, message: str) -> None:
        for text in self.buffers.outgoing(message):
            self.writer.write(text)

    async def _read(self, inbox: AsyncIterator[str | bytes]) -> None:
        await self.realtime.flush()  # session.created
        async for message in inbox:
            events: list[RealtimeEvent]
            if isinstance(message, bytes):
                events = self.protocol.receive_bytes(message)
            elif _kind(message) == COMMIT:  # the audio came on the track, not in appends
                events = [CommitRequested(self.protocol.commit_input())]
            else:
                events = self.protocol.receive_text(message)
            for event in events:
                await self.realtime.handle(event)
            await self.realtime.flush()
