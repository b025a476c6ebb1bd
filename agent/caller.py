"""A simulated caller: one call to a running server, streamed at real-time pace and recorded.

It backs ``voxline call`` and the voice-to-voice benchmark, and the end-to-end tests use it;
what they have it say comes from :mod:`agent.caller_audio`, and the server they call from
:mod:`agent.server_process`.
:func:`call` opens the connection (the native ``/v1/stream`` protocol, or ``/v1/realtime``),
opens the session and starts two tasks: the sender streams 20 ms PCM16 frames on a fixed
real-time schedule, all the time (what :meth:`Caller.speak` queued, else silence, as a phone
does), and records when the frames holding an utterance's first and last loud samples went
out; the receiver records every event and, for each reply (a *generation*), its audio and when
each frame arrived. Times are the client's ``time.perf_counter()``; "loud" is a sample above
|300|. What is protocol-specific (the opening, how audio and events travel) is a
:class:`~agent.caller_wires.Wire`.

With ``echo=(delay_ms, gain_db)`` the caller is a line without echo cancellation: the reply
audio it receives is "played" at real-time pace and comes back in what it sends, ``delay_ms``
later and ``gain_db`` quieter, mixed with its own speech (cleared on an interruption, as a
client stops playing).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import numpy as np
import websockets

from agent.caller_wires import NATIVE_RATE, NativeWire, RealtimeWire, Wire
from pipeline.errors import ProtocolError
from pipeline.events import Pcm

__all__ = [
    "FRAME_MS",
    "LOUD",
    "RATE",
    "TRY_AGAIN_LATER",
    "CallRefused",
    "Caller",
    "Reply",
    "Spoken",
    "Utterance",
    "call",
    "endpoint",
]

RATE = NATIVE_RATE  # the native protocol's (the realtime wire has its own)
FRAME_MS = 20
LOUD = 300

#: what a caller is told of each event it receives (audio excluded), as it arrives
Listener = Callable[[dict[str, Any]], None]


#: the close code of a call the server refused for now (its limit, its load, loading, draining)
TRY_AGAIN_LATER = 1013


class CallRefused(ProtocolError):
    """The server closed the call with 1013 before it started; ``reason`` says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Utterance:
    """Speech to send: mono PCM16 at the wire's rate, with where its loud part lies."""

    text: str
    pcm: Pcm
    onset: int  # first loud sample
    end: int  # one past the last loud sample

    @classmethod
    def of(cls, text: str, pcm: Pcm) -> Utterance:
        """``pcm`` labelled ``text``; all of it counts as speech when nothing in it is loud."""
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > LOUD)
        if not len(loud):
            return cls(text, pcm, 0, len(pcm))
        return cls(text, pcm, int(loud[0]), int(loud[-1]) + 1)


@dataclass
class Spoken:
    """One utterance queued on a caller's stream (positions in samples of that stream)."""

    onset: int
    end: int
    last: int
    onset_sent: float = 0.0
    end_sent: float = 0.0
    done: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class Reply:
    """What arrived of one generation (audio at ``rate``)."""

    generation: int
    rate: int = RATE
    text: str = ""
    frames: list[tuple[float, int, int]] = field(default_factory=list)  # arrival, samples, peak
    audio: bytearray = field(default_factory=bytearray)
    ended: float | None = None
    interrupted: float | None = None
    interruption: dict[str, Any] = field(default_factory=dict)
    late_frames: int = 0  # frames after `interrupted`
    latency: dict[str, float] | None = None

    @property
    def over(self) -> bool:
        return self.ended is not None or self.interrupted is not None

    def first_loud(self) -> float | None:
        return next((t for t, _, peak in self.frames if peak > LOUD), None)

    def lead_in_ms(self) -> float:
        """Milliseconds of audio before the first loud sample's frame."""
        quiet = 0
        for _, samples, peak in self.frames:
            if peak > LOUD:
                break
            quiet += samples
        return quiet * 1000 / self.rate

    def lateness(self) -> list[float]:
        """Seconds each frame came after its play time (playing from the first frame)."""
        if not self.frames:
            return []
        t0, out, position = self.frames[0][0], [], 0
        for arrival, samples, _ in self.frames:
            out.append(arrival - (t0 + position / self.rate))
            position += samples
        return out


class Caller:
    """One call: a real-time sender and a recording receiver, speaking ``wire``'s protocol."""

    def __init__(
        self,
        ws: websockets.ClientConnection,
        wire: Wire,
        echo: tuple[float, float] | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.ws = ws
        self.wire = wire
        self.rate = wire.rate
        self.frame = wire.rate * FRAME_MS // 1000
        self.echo = echo
        self.listener = listener
        self._played = bytearray()  # reply audio waiting to be "played" (echo mode)
        self.replies: dict[int, Reply] = {}
        self.events: list[dict[str, Any]] = []
        self.started = False
        self.closed = False
        self.send_lag: list[float] = []
        self.current = 0  # the generation whose audio is arriving
        self._queue = bytearray()
        self._sent = 0
        self._marks: list[Spoken] = []
        self._changed = anyio.Event()

    @property
    def echoing(self) -> bool:
        """Reply audio is still to come back as echo (echo mode)."""
        return bool(self._played)

    def reply(self, generation: int) -> Reply:
        return self.replies.setdefault(generation, Reply(generation, self.rate))

    def latest(self) -> int:
        return max(self.replies, default=0)

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "error"]

    def speak(self, item: Utterance) -> Spoken:
        base = self._sent + len(self._queue) // 2
        spoken = Spoken(base + item.onset, base + item.end - 1, base + len(item.pcm) - 1)
        self._queue += item.pcm.astype("<i2").tobytes()
        self._marks.append(spoken)
        return spoken

    async def wait(self, ready: Callable[[], bool], within: float) -> bool:
        """True once ``ready()`` (False after ``within`` seconds, or when the call closed)."""
        with anyio.move_on_after(within):
            while not ready() and not self.closed:
                await self._changed.wait()
        return ready()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- what the wire reports ----------------------------------------------------------------

    def heard_audio(self, pcm: bytes, now: float) -> None:
        """Reply audio of the current generation arrived."""
        samples = np.frombuffer(pcm, dtype="<i2")
        reply = self.reply(self.current)
        if reply.interrupted is not None:
            reply.late_frames += 1
        peak = int(np.abs(samples.astype(np.int32)).max()) if len(samples) else 0
        reply.frames.append((now, len(samples), peak))
        reply.audio += pcm
        if self.echo is not None and reply.interrupted is None:
            if not self._played:  # playback starts: the echo path's delay first
                self._played += bytes(2 * round(self.rate * self.echo[0] / 1000))
            self._played += pcm

    def heard_event(self, event: dict[str, Any], now: float) -> None:
        event["arrived"] = now
        self.events.append(event)
        if self.listener is not None:
            self.listener(event)

    def stop_playing(self) -> None:
        """The client stops playing (an interruption): no more echo of it."""
        self._played.clear()

    # -- the two tasks --------------------------------------------------------------------------

    async def send(self) -> None:
        start = time.perf_counter()
        size = self.frame * 2
        silent = bytes(size)
        index = 0
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                due = start + index * FRAME_MS / 1000
                if (wait := due - time.perf_counter()) > 0:
                    await anyio.sleep(wait)
                self.send_lag.append(time.perf_counter() - due)
                chunk = bytes(self._queue[:size]) or silent
                del self._queue[:size]
                chunk += silent[len(chunk) :]
                if self.echo is not None:
                    chunk = self._with_echo(chunk)
                await self.ws.send(self.wire.audio(chunk))
                sent_at = time.perf_counter()
                begin, self._sent = self._sent, self._sent + self.frame
                for spoken in self._marks:
                    if begin <= spoken.onset < self._sent:
                        spoken.onset_sent = sent_at
                    if begin <= spoken.end < self._sent:
                        spoken.end_sent = sent_at
                    if spoken.last < self._sent:
                        spoken.done.set()
                self._marks = [s for s in self._marks if not s.done.is_set()]
                index += 1

    def _with_echo(self, chunk: bytes) -> bytes:
        played = bytes(self._played[: len(chunk)])
        del self._played[: len(chunk)]
        if not played:
            return chunk
        if not self._played:  # the echo is over: a wait on ``echoing`` wakes now, not at the
            self._notify()  # next message (a Realtime server sends none while it is idle)
        assert self.echo is not None
        echo = np.frombuffer(played, dtype="<i2").astype(np.float32) * 10 ** (self.echo[1] / 20)
        mine = np.frombuffer(chunk, dtype="<i2").astype(np.float32)
        mine[: len(echo)] += echo
        return np.clip(mine, -32768, 32767).astype("<i2").tobytes()

    async def receive(self) -> None:
        try:
            async for message in self.ws:
                self.wire.receive(self, message, time.perf_counter())
                self._notify()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._notify()


def endpoint(url: str, wire: Wire) -> str:
    """``url`` itself when it names a path, else the protocol's endpoint on that server."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return urlunsplit(parts._replace(path=wire.path))
    return url


@asynccontextmanager
async def call(
    url: str,
    echo: tuple[float, float] | None = None,
    *,
    realtime: bool = False,
    listener: Listener | None = None,
    open_timeout: float = 30.0,
) -> AsyncIterator[Caller]:
    """A call to the server at ``url`` (``ws://host:port``, or the endpoint's whole URL).

    Raises ``OSError`` (nothing there), ``websockets.InvalidURI`` or
    ``websockets.InvalidHandshake`` (no such endpoint) as ``websockets.connect`` does, and
    :class:`~pipeline.errors.ProtocolError` when the session does not open within
    ``open_timeout`` seconds (:class:`CallRefused` when the server closed it with 1013, "try
    again later": at its limit, overloaded, loading or draining); all of them before the
    caller's tasks start.
    """
    wire: Wire = RealtimeWire() if realtime else NativeWire()
    url = endpoint(url, wire)
    async with websockets.connect(url, max_size=None, open_timeout=open_timeout) as ws:
        caller = Caller(ws, wire, echo, listener)
        with anyio.move_on_after(open_timeout), contextlib.suppress(websockets.ConnectionClosed):
            for message in wire.opening():  # a refusal may close the socket before they are out
                await ws.send(message)
            while not caller.started:
                wire.receive(caller, await ws.recv(), time.perf_counter())
        if not caller.started:
            if ws.close_code == TRY_AGAIN_LATER:
                reason = ws.close_reason or ""
                raise CallRefused(f"{url} refused the call: {reason}", reason)
            raise ProtocolError(f"{url} did not open a session")
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller.receive)
            tg.start_soon(caller.send)
            try:
                yield caller
            finally:
                with contextlib.suppress(websockets.ConnectionClosed):
                    for message in wire.closing():
                        await ws.send(message)
                tg.cancel_scope.cancel()
