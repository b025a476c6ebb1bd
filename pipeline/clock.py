"""Clocks: the media clock counts samples; wall clocks are injected so tests never sleep.

:class:`MediaClock` is pure arithmetic over sample counts. :class:`WallClock` is what real-time
pacing and latency measurement use; :class:`MonotonicClock` is the real one and
:class:`FakeClock` moves only when a test advances it, waking sleepers whose deadline passed.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from typing import Protocol

import anyio
import anyio.lowlevel

from pipeline.events import PIPELINE_RATE


class MediaClock:
    """Counts samples of one stream and converts between samples and seconds."""

    def __init__(self, sample_rate: int, start: int = 0) -> None:
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        self.sample_rate = sample_rate
        self.samples = start

    def advance(self, samples: int) -> int:
        """Count ``samples`` more; return the position before them (the chunk's timestamp)."""
        if samples < 0:
            raise ValueError("cannot go back in media time")
        position = self.samples
        self.samples += samples
        return position

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def to_samples(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)

    def to_seconds(self, samples: int) -> float:
        return samples / self.sample_rate


class WallClock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class MonotonicClock:
    """The real clock (``time.perf_counter``)."""

    def now(self) -> float:
        return time.perf_counter()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.perf_counter()
        if delay > 0:
            await anyio.sleep(delay)
        else:
            await anyio.lowlevel.checkpoint()


class FakeClock:
    """A clock that moves only when :meth:`advance` is called."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._order), wake))
        await wake.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError("cannot go back in time")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def sleepers(self) -> int:
        return len(self._sleepers)


class InputClock:
    """Caller-audio position in samples, extrapolated by the wall clock between frames.

    Turn-taking counts time in input samples; a client may send in bursts or stall, so ``now``
    is the last position plus the wall time since it arrived, never going back.

    The caller's first frame is placed at ``now``: a client that sent nothing while the
    greeting played (a native or Realtime client sends only while its caller talks) would
    otherwise start seconds in the past, and counted from there its speech stopped seconds
    "ago" as soon as it stopped: every silence rule fired at once (issue 19). There is no
    stream yet to cut, so the time before it is silence. After that, positions stay
    contiguous: a stream held up (Twilio, SIP, WebRTC, this process's own event loop) sends
    what was held up back to back and catches up, and a gap placed inside the caller's words
    would cut them in two where the VAD and the ASR end their stream. (A client idle between
    turns keeps the lag it had; telling its resumed audio from a stall's held-up frames takes
    frames after it, by which time its words have begun: not done.)
    """

    def __init__(self, clock: WallClock, rate: int = PIPELINE_RATE) -> None:
        self.rate = rate
        self.clock = clock
        self.media = MediaClock(rate)
        self._at = clock.now()
        self._now = 0
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=1024)

    def advance(self, samples: int) -> int:
        """Count a frame of ``samples`` arriving now; return its position (its first sample's)."""
        now, at = self.now(), self.clock.now()  # now() first: time so far never goes back
        if not self._arrivals:  # the first frame: nothing to cut, it ends now
            self.media.samples += max(0, now - self.media.samples - samples)
        pts = self.media.advance(samples)
        self._at = at
        self._arrivals.append((self.media.samples, self._at))
        return pts

    def now(self) -> int:
        elapsed = max(0.0, self.clock.now() - self._at)
        self._now = max(self._now, self.media.samples + int(elapsed * self.rate))
        return self._now

    def wall_time_of(self, sample: int) -> float:
        """When the frame holding ``sample`` arrived (the latest known time if older)."""
        for end, at in self._arrivals:
            if end >= sample:
                return at
        return self._at
