"""A sink that watches a call: what the session tells its transport, also told to a listener.

::

    session.outbox.sink = WatchingSink(transport's sink, listener, ...)
    session ─► WatchingSink ─► the transport's sink     (every call forwarded, unchanged)
                  └─► listener: event / audio_started / audio_ended / audio_cleared

The call watchers (:data:`agent.call_loop.WATCHERS`: the call records, the webhooks' call
record, the traces) each put one around the session's sink, so a call may go out through
several, one inside the other; each keeps the sink it wraps as ``sink`` (no transport's sink
has one), so :func:`transport_sink` and :func:`transport_of` see through them.

What the listener is told, with the time ``now()`` reads:

=========================  ===============================================================
``send_event(event)``      ``event(event, at)``, before the event goes out
``send_audio``             ``audio_started(generation, at)`` at the first audio of each
                           generation (after an end or a clear, the next audio is a start)
``end_audio``              ``audio_ended(generation, at)``, after the transport's
``clear_audio``            ``audio_cleared(generation, played, at)``, after the transport's
                           (``played``: what it answered)
=========================  ===============================================================

Failure isolation: a listener that raises is logged once (on the ``log`` given, naming the
call and ``what`` failed) and told nothing more; the call goes on, and the transport gets
exactly what it would have got without the watcher. The transport's own errors go to the
call unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from agent.session_events import CallSink, SessionEvent

__all__ = ["CallListener", "WatchingSink", "transport_of", "transport_sink"]


class CallListener(Protocol):
    """What a watcher is told of a call (see the module doc); ``at``: the watcher's time."""

    def event(self, event: SessionEvent, at: float) -> None: ...

    def audio_started(self, generation: int, at: float) -> None: ...

    def audio_ended(self, generation: int, at: float) -> None: ...

    def audio_cleared(self, generation: int, played: int | None, at: float) -> None: ...


class WatchingSink:
    """``sink``, forwarded every call, with ``listener`` told what went out (see the module
    doc): ``now`` is its clock, ``call_id`` and ``what`` (``recording``) name a failure on
    ``log``."""

    def __init__(
        self,
        sink: CallSink,
        listener: CallListener,
        now: Callable[[], float],
        *,
        call_id: str,
        what: str,
        log: logging.Logger,
    ) -> None:
        self.sink = sink
        self.listener = listener
        self._now = now
        self._call_id = call_id
        self._what = what
        self._log = log
        self._audio: int | None = None  # the generation whose audio is going out
        self._failed = False

    @property
    def output_rate(self) -> int:
        return self.sink.output_rate

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        if generation != self._audio:
            self._audio = generation
            self._tell(lambda at: self.listener.audio_started(generation, at))
        await self.sink.send_audio(generation, pcm)

    async def end_audio(self, generation: int) -> None:
        await self.sink.end_audio(generation)
        self._audio = None
        self._tell(lambda at: self.listener.audio_ended(generation, at))

    async def clear_audio(self, generation: int) -> int | None:
        played = await self.sink.clear_audio(generation)
        self._audio = None
        self._tell(lambda at: self.listener.audio_cleared(generation, played, at))
        return played

    async def send_event(self, event: SessionEvent) -> None:
        self._tell(lambda at: self.listener.event(event, at))
        await self.sink.send_event(event)

    def _tell(self, step: Callable[[float], None]) -> None:
        """Tell the listener; a failure to is logged once and never reaches the call."""
        if self._failed:
            return
        try:
            step(self._now())
        except Exception:
            self._failed = True
            self._log.exception("call %s: %s failed (the call goes on)", self._call_id, self._what)


def transport_sink(sink: CallSink) -> CallSink:
    """The transport's own sink, under the sinks that watchers put around it."""
    while (inner := getattr(sink, "sink", None)) is not None:
        sink = inner
    return sink


def transport_of(sink: CallSink) -> str:
    """The transport's name, from its sink's class (``NativeSink``: ``native``), under the
    sinks that watchers put around it."""
    return type(transport_sink(sink)).__name__.removesuffix("Sink").lower() or "unknown"
