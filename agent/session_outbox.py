"""A session's way out to its transport: one bounded, ordered outbox for events, and the
bookkeeping of which reply's audio the transport is receiving.

Every event for the client (transcripts, agent text, marks, latency, notices, the end of the
call) and every "this reply's audio is complete" goes through :meth:`SessionOutbox.emit` into a
stream of :data:`OUTBOX_SIZE` items that one task of the call (:meth:`SessionOutbox.opened`)
hands to the sink in order. Policy: the emitter waits when it is full, so a client that stops
reading holds up its own call (its transport drops it after its send timeout), never the
server's memory. Audio frames go straight to the sink from the playout (they are paced in real
time); :meth:`SessionOutbox.audio` closes the previous reply's audio first, so a transport
always sees one reply's audio at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agent.session_events import CallEnded, CallSink, SessionEvent

#: items the outbox holds before emitters wait (see the module doc)
OUTBOX_SIZE = 64


class AudioDone(msgspec.Struct, frozen=True):
    """Reply ``generation``'s audio is complete."""

    generation: int
    #: ``False``: a text-only reply (:data:`~agent.reply.ReplyMode`), which opened no audio:
    #: the sink still hears that it is over
    spoken: bool = True


class SessionOutbox:
    """Events to the sink, in order; which generation's audio is open."""

    def __init__(self, sink: CallSink, on_ended: Callable[[], None]) -> None:
        self.sink = sink
        #: told when ``CallEnded`` has gone to the sink (the session ends the call)
        self.on_ended = on_ended
        self._send: MemoryObjectSendStream[SessionEvent | AudioDone] | None = None
        #: the generation whose audio the sink is receiving
        self.open: int | None = None

    async def emit(self, item: SessionEvent | AudioDone) -> None:
        """Queue ``item`` (waiting while the outbox is full); dropped unless it is open."""
        if self._send is not None:
            await self._send.send(item)

    def opened(self) -> Callable[[], Awaitable[None]]:
        """Open the outbox (items are taken from now on); returns the task that hands them to
        the sink, in order, until cancelled (after ``CallEnded`` it ends the call)."""
        send, receive = anyio.create_memory_object_stream[SessionEvent | AudioDone](OUTBOX_SIZE)
        self._send = send
        return lambda: self._drain(send, receive)

    async def _drain(
        self,
        send: MemoryObjectSendStream[SessionEvent | AudioDone],
        receive: MemoryObjectReceiveStream[SessionEvent | AudioDone],
    ) -> None:
        try:
            async with receive:
                async for item in receive:
                    if isinstance(item, AudioDone) and not item.spoken:
                        await self.sink.end_audio(item.generation)
                        continue
                    if isinstance(item, AudioDone):
                        await self.close_audio(item.generation)
                        continue
                    await self.sink.send_event(item)
                    if isinstance(item, CallEnded):
                        self.on_ended()
        finally:
            self._send = None
            send.close()

    async def audio(self, generation: int, pcm: bytes) -> None:
        """A frame of ``generation`` to the sink (closing the previous reply's audio)."""
        if self.open not in (None, generation):
            await self.close_audio(self.open)
        self.open = generation
        await self.sink.send_audio(generation, pcm)

    async def close_audio(self, generation: int) -> None:
        """Tell the sink ``generation``'s audio is complete (once)."""
        if self.open == generation:
            self.open = None
            await self.sink.end_audio(generation)

    async def clear_audio(self, generation: int) -> int | None:
        """Barge-in: the sink drops what it buffers of ``generation``; returns how many of its
        samples the far side says it played (``None``: unknown)."""
        if self.open == generation:
            self.open = None
        return await self.sink.clear_audio(generation)
