"""Bounded channels between stages, each with a policy stated where it is made.

A channel carries :class:`~pipeline.events.Event` objects from senders to receivers. It holds
at most ``capacity`` data events; what happens when it is full is its :class:`Policy`:

``BLOCK``
    the sender waits (backpressure). Use it where the producer can be paced: text into TTS,
    TTS audio into playout.
``COALESCE``
    a contiguous :class:`~pipeline.events.AudioFrame` is appended to the newest queued frame
    instead of taking a slot, so nothing is lost and the item count stays bounded. A frame that
    cannot be merged (a gap, another stream, or the merged frame would exceed
    ``max_coalesced_samples``) makes the sender wait as under ``BLOCK``; memory is therefore
    bounded by ``capacity * max_coalesced_samples``. Use it for real-time audio from the network.
``DROP_OLDEST``
    the oldest queued data event is discarded (and counted) to make room. Use it where only
    recent data matters (meters, partial transcripts).

Control events (:func:`~pipeline.events.is_control`) go to a separate small queue, are never
coalesced or dropped, and overtake queued data: a receiver always gets pending control events
first. Closing the channel (:meth:`Channel.close`) is ordered: receivers drain what is queued,
then get :class:`anyio.EndOfStream`.

Generations: a channel made with a :class:`~pipeline.generations.Generations` registry drops
data events of cancelled generations, both those already queued and those sent later.

Receiving is cancel-safe: an event is only taken from the queue by a receive that returns it.

Cost: this is the hot path of every call (a few hundred events a second per stage per
session), so waiting is built on the running loop's futures (anyio cancel scopes cancel them
like any other await) and, like ``asyncio.Queue``, ``send`` and ``receive`` only yield to the
loop when they have to wait. See BENCHMARKS.md for what a hop costs against ``asyncio.Queue``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from pipeline.events import PIPELINE_RATE, AudioFrame, Event

if TYPE_CHECKING:
    from pipeline.generations import Generations


class Policy(enum.Enum):
    BLOCK = "block"
    COALESCE = "coalesce"
    DROP_OLDEST = "drop_oldest"


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    name: str
    policy: Policy
    capacity: int
    #: data events queued now
    depth: int
    #: control events queued now
    control_depth: int
    #: audio samples queued now (in AudioFrame data events)
    queued_samples: int
    #: the largest ``depth`` seen
    high_water: int
    sent: int
    received: int
    #: sends that had to wait for room
    blocked_sends: int
    #: frames merged into a queued frame (``COALESCE``)
    coalesced: int
    #: queued events discarded to make room (``DROP_OLDEST``)
    dropped: int
    #: events of cancelled generations discarded
    purged: int


class Channel:
    """A bounded, multi-producer, multi-consumer queue of events with a stated policy."""

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: Policy,
        *,
        control_capacity: int = 16,
        max_coalesced_samples: int = 5 * PIPELINE_RATE,
        generations: Generations | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if control_capacity < 1:
            raise ValueError("control_capacity must be at least 1")
        self.name = name
        self.capacity = capacity
        self.policy = policy
        self.control_capacity = control_capacity
        self.max_coalesced_samples = max_coalesced_samples
        self._data: deque[Event] = deque()
        self._control: deque[Event] = deque()
        self._receivers: deque[asyncio.Future[None]] = deque()
        self._senders: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._generations = generations
        self._high_water = 0
        self._sent = 0
        self._received = 0
        self._blocked_sends = 0
        self._coalesced = 0
        self._dropped = 0
        self._purged = 0
        if generations is not None:
            generations.register(self)

    # -- sending -------------------------------------------------------------------------------

    def send_nowait(self, event: Event) -> None:
        """Queue ``event`` or raise :class:`anyio.WouldBlock` if the policy says wait."""
        if self._closed:
            raise anyio.ClosedResourceError(f"channel {self.name!r} is closed")
        if not self._try_put(event):
            raise anyio.WouldBlock

    async def send(self, event: Event) -> None:
        """Queue ``event``, waiting for room where the policy says so."""
        if self._closed:
            raise anyio.ClosedResourceError(f"channel {self.name!r} is closed")
        if self._try_put(event):
            return
        self._blocked_sends += 1
        while True:
            waiter = asyncio.get_running_loop().create_future()
            self._senders.append(waiter)
            try:
                await waiter
            except BaseException:
                self._forget(self._senders, waiter, wake_next=self._has_room_for_sender)
                raise
            if self._closed:
                raise anyio.ClosedResourceError(f"channel {self.name!r} is closed")
            if self._try_put(event):
                return

    def _try_put(self, event: Event) -> bool:
        generations = self._generations
        if generations is not None and generations.is_cancelled(event):
            self._purged += 1
            self._sent += 1
            return True
        data = self._data
        if type(event).control:
            if len(self._control) >= self.control_capacity:
                return False
            self._control.append(event)
        elif len(data) < self.capacity:
            data.append(event)
            if len(data) > self._high_water:
                self._high_water = len(data)
        elif self.policy is Policy.DROP_OLDEST:
            data.popleft()
            self._dropped += 1
            data.append(event)
        elif self.policy is Policy.COALESCE and self._coalesce(event):
            self._sent += 1
            return True
        else:
            return False
        self._sent += 1
        if self._receivers:
            self._wake(self._receivers)
        return True

    def _coalesce(self, event: Event) -> bool:
        if not isinstance(event, AudioFrame) or not self._data:
            return False
        tail = self._data[-1]
        if not isinstance(tail, AudioFrame) or not event.follows(tail):
            return False
        if tail.num_samples + event.num_samples > self.max_coalesced_samples:
            return False
        self._data[-1] = tail.append(event)
        self._coalesced += 1
        return True

    # -- receiving -----------------------------------------------------------------------------

    def receive_nowait(self) -> Event:
        """Take the next event: control first, then data in order.

        Raises :class:`anyio.WouldBlock` when empty, :class:`anyio.EndOfStream` when empty and
        closed.
        """
        while True:
            if self._control:
                event = self._control.popleft()
            elif self._data:
                event = self._data.popleft()
            elif self._closed:
                raise anyio.EndOfStream
            else:
                raise anyio.WouldBlock
            if self._senders:
                self._wake(self._senders)
            generations = self._generations
            if (
                generations is not None
                and not type(event).control
                and generations.is_cancelled(event)
            ):
                self._purged += 1
                continue
            self._received += 1
            return event

    async def receive(self) -> Event:
        """Wait for the next event (cancel-safe: a cancelled receive takes nothing)."""
        while True:
            if self._control or self._data or self._closed:
                try:
                    return self.receive_nowait()
                except anyio.WouldBlock:  # everything queued was purged
                    pass
            waiter = asyncio.get_running_loop().create_future()
            self._receivers.append(waiter)
            try:
                await waiter
            except BaseException:
                self._forget(self._receivers, waiter, wake_next=self._has_items)
                raise

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """No more sends; receivers drain the queue, then get :class:`anyio.EndOfStream`."""
        if self._closed:
            return
        self._closed = True
        for waiters in (self._receivers, self._senders):
            while waiters:
                self._wake(waiters)

    @property
    def closed(self) -> bool:
        return self._closed

    def purge(self, generation: int) -> int:
        """Discard queued data events of ``generation``; return how many."""
        kept = [e for e in self._data if e.generation != generation]
        purged = len(self._data) - len(kept)
        if purged:
            self._data = deque(kept)
            self._purged += purged
            for _ in range(purged):
                if not self._senders:
                    break
                self._wake(self._senders)
        return purged

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            name=self.name,
            policy=self.policy,
            capacity=self.capacity,
            depth=len(self._data),
            control_depth=len(self._control),
            queued_samples=sum(e.num_samples for e in self._data if isinstance(e, AudioFrame)),
            high_water=self._high_water,
            sent=self._sent,
            received=self._received,
            blocked_sends=self._blocked_sends,
            coalesced=self._coalesced,
            dropped=self._dropped,
            purged=self._purged,
        )

    # -- internals -----------------------------------------------------------------------------

    def _has_items(self) -> bool:
        return bool(self._control or self._data or self._closed)

    def _has_room_for_sender(self) -> bool:
        return len(self._data) < self.capacity or len(self._control) < self.control_capacity

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> None:
        """Wake the first waiter that is still waiting."""
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget(
        self,
        waiters: deque[asyncio.Future[None]],
        waiter: asyncio.Future[None],
        *,
        wake_next: Callable[[], bool],
    ) -> None:
        """Remove a cancelled waiter; if it had been woken, pass the wake-up on."""
        if waiter.done() and not waiter.cancelled():
            if wake_next():
                self._wake(waiters)
        else:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
