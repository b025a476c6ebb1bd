"""A caller for benchmarks: one ``/v1/stream`` call streaming at real-time pace, timed.

:func:`call` opens the connection, says ``hello`` and starts two tasks: the sender streams
20 ms PCM16 frames at 16 kHz on a fixed real-time schedule, all the time (what
:meth:`Caller.speak` queued, else silence, as a phone does), and records when the frames
holding an utterance's first and last loud samples went out; the receiver records every
event and, for each generation, when each audio frame arrived. Times are the client's
``time.perf_counter()``; "loud" is a sample above |300|.

With ``echo=(delay_ms, gain_db)`` the caller is a line without echo cancellation: the reply
audio it receives is "played" at real-time pace and comes back in what it sends, ``delay_ms``
later and ``gain_db`` quieter, mixed with its own speech (cleared on ``interrupted``, as a
client stops playing).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
import websockets

from tests.audio import Pcm, espeak

RATE = 16000
FRAME = RATE // 50  # 20 ms
LOUD = 300


@dataclass(frozen=True)
class Utterance:
    text: str
    pcm: Pcm
    onset: int  # first loud sample
    end: int  # one past the last loud sample


def utterance(text: str) -> Utterance:
    pcm = espeak(text)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > LOUD)
    return Utterance(text, pcm, int(loud[0]), int(loud[-1]) + 1)


# -- the client --------------------------------------------------------------------------------


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
    """What arrived of one generation."""

    generation: int
    text: str = ""
    frames: list[tuple[float, int, int]] = field(default_factory=list)  # arrival, samples, peak
    ended: float | None = None
    interrupted: float | None = None
    interruption: dict[str, Any] = field(default_factory=dict)
    late_frames: int = 0  # frames after `interrupted`
    latency: dict[str, float] | None = None

    def first_loud(self) -> float | None:
        return next((t for t, _, peak in self.frames if peak > LOUD), None)

    def lead_in_ms(self) -> float:
        """Milliseconds of audio before the first loud sample's frame."""
        quiet = 0
        for _, samples, peak in self.frames:
            if peak > LOUD:
                break
            quiet += samples
        return quiet * 1000 / RATE

    def lateness(self) -> list[float]:
        """Seconds each frame came after its play time (playing from the first frame)."""
        if not self.frames:
            return []
        t0, out, position = self.frames[0][0], [], 0
        for arrival, samples, _ in self.frames:
            out.append(arrival - (t0 + position / RATE))
            position += samples
        return out


class Caller:
    """One ``/v1/stream`` call: a real-time sender and a recording receiver."""

    def __init__(
        self, ws: websockets.ClientConnection, echo: tuple[float, float] | None = None
    ) -> None:
        self.ws = ws
        self.echo = echo
        self._played = bytearray()  # reply audio waiting to be "played" (echo mode)
        self.replies: dict[int, Reply] = {}
        self.events: list[dict[str, Any]] = []
        self.started = False
        self.closed = False
        self.send_lag: list[float] = []
        self._queue = bytearray()
        self._sent = 0
        self._marks: list[Spoken] = []
        self._current = 0
        self._changed = anyio.Event()

    @property
    def echoing(self) -> bool:
        """Reply audio is still to come back as echo (echo mode)."""
        return bool(self._played)

    def reply(self, generation: int) -> Reply:
        return self.replies.setdefault(generation, Reply(generation))

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

    async def send(self) -> None:
        start = time.perf_counter()
        silent = bytes(FRAME * 2)
        index = 0
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                due = start + index * 0.02
                if (wait := due - time.perf_counter()) > 0:
                    await anyio.sleep(wait)
                self.send_lag.append(time.perf_counter() - due)
                chunk = bytes(self._queue[: FRAME * 2]) or silent
                del self._queue[: FRAME * 2]
                chunk += silent[len(chunk) :]
                if self.echo is not None:
                    chunk = self._with_echo(chunk)
                await self.ws.send(chunk)
                sent_at = time.perf_counter()
                begin, self._sent = self._sent, self._sent + FRAME
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
        played = bytes(self._played[: FRAME * 2])
        del self._played[: FRAME * 2]
        if not played:
            return chunk
        assert self.echo is not None
        echo = np.frombuffer(played, dtype="<i2").astype(np.float32) * 10 ** (self.echo[1] / 20)
        mine = np.frombuffer(chunk, dtype="<i2").astype(np.float32)
        mine[: len(echo)] += echo
        return np.clip(mine, -32768, 32767).astype("<i2").tobytes()

    async def receive(self) -> None:
        try:
            async for message in self.ws:
                now = time.perf_counter()
                if isinstance(message, bytes):
                    pcm = np.frombuffer(message, dtype="<i2")
                    reply = self.reply(self._current)
                    if reply.interrupted is not None:
                        reply.late_frames += 1
                    peak = int(np.abs(pcm.astype(np.int32)).max()) if len(pcm) else 0
                    reply.frames.append((now, len(pcm), peak))
                    if self.echo is not None and reply.interrupted is None:
                        if not self._played:  # playback starts: the echo path's delay first
                            self._played += bytes(2 * round(RATE * self.echo[0] / 1000))
                        self._played += message
                else:
                    self._event(json.loads(message), now)
                self._notify()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._notify()

    def _event(self, event: dict[str, Any], now: float) -> None:
        event["arrived"] = now
        self.events.append(event)
        kind = event["type"]
        if kind == "session.started":
            self.started = True
        elif kind == "audio.start":
            self._current = event["generation"]
            self.reply(self._current)
        elif kind == "audio.end":
            self.reply(event["generation"]).ended = now
        elif kind == "agent.text":
            self.reply(event["generation"]).text += event["delta"]
        elif kind == "interrupted":
            reply = self.reply(event["generation"])
            reply.interrupted, reply.interruption = now, event
            self._played.clear()  # the client stops playing: no more echo of it
        elif kind == "turn.latency":
            self.reply(event["generation"]).latency = event["latency_ms"]
        elif kind == "session.ended":
            self.closed = True


@asynccontextmanager
async def call(url: str, echo: tuple[float, float] | None = None) -> AsyncIterator[Caller]:
    async with websockets.connect(f"{url}/v1/stream", max_size=None) as ws:
        caller = Caller(ws, echo)
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller.receive)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            if not await caller.wait(lambda: caller.started, 30):
                raise RuntimeError("no session.started")
            tg.start_soon(caller.send)
            try:
                yield caller
            finally:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(json.dumps({"type": "bye"}))
                tg.cancel_scope.cancel()
