"""Playout: reply audio to the transport in real time, and what the caller heard.

:class:`PlayoutBuffer` is the sans-I/O core: replies (generations) push PCM with word timings;
the driver pulls fixed-size frames; :meth:`PlayoutBuffer.clear` drops what is buffered and
reports how much of the interrupted reply was played and which text that covered.

:class:`Playout` is the async driver: it bounds how far synthesis may run ahead (``write`` waits
while more than ``max_ahead`` seconds are buffered: barge-in then wastes little work), and
:meth:`Playout.run` sends frames to the transport paced by their media time, ``lead`` seconds
ahead of real time so the far side's jitter buffer never starves.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from pipeline.clock import WallClock
from pipeline.events import BYTES_PER_SAMPLE, AudioFrame


@dataclass(frozen=True, slots=True)
class Word:
    """Reply text ``[text_start, text_end)`` spoken in samples ``[sample_start, sample_end)``.

    Samples count from the first sample of the generation's audio at the playout rate.
    """

    text_start: int
    text_end: int
    sample_start: int
    sample_end: int


@dataclass(frozen=True, slots=True)
class Heard:
    """What the caller heard of one generation when it stopped or finished."""

    generation: int
    samples_played: int
    #: the reply text up to here was heard (whole words only)
    text_end: int
    #: True when the reply was cut short
    interrupted: bool


@dataclass
class _Reply:
    generation: int
    pushed: int = 0
    played: int = 0
    finished: bool = False
    words: list[Word] = field(default_factory=list)

    def heard(self) -> int:
        return text_end(self.words, self.played)


def text_end(words: Sequence[Word], played: int) -> int:
    """Where the text heard ends when ``played`` samples have played (whole words only)."""
    end = 0
    for word in words:
        if word.sample_end > played:
            break
        end = word.text_end
    return end


class PlayoutBuffer:
    """Queued reply audio, one generation after another (sans-I/O)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._audio: deque[tuple[int, bytes]] = deque()
        self._replies: dict[int, _Reply] = {}
        self.buffered_samples = 0

    def push(self, generation: int, pcm: bytes, words: Sequence[Word] = ()) -> None:
        """Queue ``pcm`` for ``generation``; ``words`` use the generation's sample coordinates."""
        if len(pcm) % BYTES_PER_SAMPLE:
            raise ValueError("PCM16 needs an even number of bytes")
        reply = self._replies.setdefault(generation, _Reply(generation))
        if reply.finished:
            raise ValueError(f"generation {generation} is finished")
        reply.pushed += len(pcm) // BYTES_PER_SAMPLE
        reply.words.extend(words)
        if pcm:
            self._audio.append((generation, pcm))
            self.buffered_samples += len(pcm) // BYTES_PER_SAMPLE

    def finish(self, generation: int) -> None:
        """No more audio will come for ``generation``."""
        self._replies.setdefault(generation, _Reply(generation)).finished = True

    def pull(self, samples: int) -> tuple[int, bytes] | None:
        """Up to ``samples`` samples of the oldest queued generation, or None when empty."""
        if not self._audio:
            return None
        generation, pcm = self._audio[0]
        wanted = samples * BYTES_PER_SAMPLE
        if len(pcm) <= wanted:
            self._audio.popleft()
            taken = pcm
        else:
            taken = pcm[:wanted]
            self._audio[0] = (generation, pcm[wanted:])
        self.buffered_samples -= len(taken) // BYTES_PER_SAMPLE
        return generation, taken

    def played(self, generation: int, samples: int) -> None:
        """Count ``samples`` of ``generation`` as played (sent to the caller)."""
        reply = self._replies.get(generation)
        if reply is not None:
            reply.played += samples

    def played_samples(self, generation: int) -> int:
        reply = self._replies.get(generation)
        return reply.played if reply is not None else 0

    def active(self, generation: int) -> bool:
        """False once ``generation`` was cleared or fully reported."""
        return generation in self._replies

    def reportable(self) -> bool:
        """Whether :meth:`done` has a report."""
        return any(r.finished and r.played >= r.pushed for r in self._replies.values())

    def done(self) -> list[Heard]:
        """Reports for finished generations whose audio has all been played (once each)."""
        reports = []
        for generation, reply in list(self._replies.items()):
            if reply.finished and reply.played >= reply.pushed:
                del self._replies[generation]
                reports.append(Heard(generation, reply.played, reply.heard(), interrupted=False))
        return reports

    def clear(self, generation: int | None = None) -> list[Heard]:
        """Drop queued audio (of ``generation``, or all) and report what was heard of it."""
        self._audio = deque(item for item in self._audio if generation not in (None, item[0]))
        self.buffered_samples = sum(len(pcm) for _, pcm in self._audio) // BYTES_PER_SAMPLE
        reports = []
        for gen, reply in list(self._replies.items()):
            if generation in (None, gen):
                del self._replies[gen]
                cut = reply.played < reply.pushed or not reply.finished
                reports.append(Heard(gen, reply.played, reply.heard(), interrupted=cut))
        return reports

    @property
    def playing(self) -> int | None:
        """The generation whose audio is at the head of the queue."""
        return self._audio[0][0] if self._audio else None


SendFrame = Callable[[AudioFrame], Awaitable[None]]
OnHeard = Callable[[Heard], Awaitable[None]]


class Playout:
    """Paces reply audio to the transport; ``write`` is bounded in seconds ahead."""

    def __init__(
        self,
        session_id: str,
        sample_rate: int,
        clock: WallClock,
        *,
        frame_ms: int = 20,
        max_ahead: float = 1.5,
        lead: float = 0.06,
        on_heard: OnHeard | None = None,
    ) -> None:
        self.session_id = session_id
        self.buffer = PlayoutBuffer(sample_rate)
        self.clock = clock
        self.frame_samples = sample_rate * frame_ms // 1000
        self.max_ahead_samples = round(max_ahead * sample_rate)
        self.lead = lead
        self.on_heard = on_heard
        self._changed = asyncio.Event()
        self._origin: tuple[float, int] | None = None  # (wall time, samples sent) when it began
        self._sent = 0

    async def write(self, generation: int, pcm: bytes, words: Sequence[Word] = ()) -> None:
        """Queue audio, first waiting while more than ``max_ahead`` seconds are buffered."""
        while self.buffer.buffered_samples >= self.max_ahead_samples:
            self._changed.clear()
            await self._changed.wait()
        self.buffer.push(generation, pcm, words)
        self._changed.set()

    def finish(self, generation: int) -> None:
        """No more audio for ``generation``: :meth:`run` reports it once it has all been
        played (``on_heard`` runs in the playout's task, in order with the frames)."""
        self.buffer.finish(generation)
        self._changed.set()

    def clear(self, generation: int | None = None) -> list[Heard]:
        """Stop playing (a barge-in): nothing more of it is sent; returns what was heard."""
        reports = self.buffer.clear(generation)
        self._changed.set()
        return reports

    async def run(self, send: SendFrame) -> None:
        """Send frames forever (cancel to stop)."""
        rate = self.buffer.sample_rate
        while True:
            await self._report(self.buffer.done())
            item = self.buffer.pull(self.frame_samples)
            if item is None:
                self._origin = None  # underrun or idle: the next audio starts a new timeline
                self._changed.clear()
                if not self.buffer.reportable():  # else a finish came in while reporting
                    await self._changed.wait()
                continue
            self._changed.set()  # room for writers
            generation, pcm = item
            if self._origin is None:
                self._origin = (self.clock.now(), self._sent)
            start, base = self._origin
            await self.clock.sleep_until(start + (self._sent - base) / rate - self.lead)
            if not self.buffer.active(generation):
                continue  # cleared while we waited: never send it
            await send(
                AudioFrame(
                    session_id=self.session_id,
                    generation=generation,
                    sample_rate=rate,
                    pcm=pcm,
                    pts=self._sent,
                )
            )
            self._sent += len(pcm) // BYTES_PER_SAMPLE
            self.buffer.played(generation, len(pcm) // BYTES_PER_SAMPLE)

    async def _report(self, reports: list[Heard]) -> None:
        if self.on_heard is not None:
            for report in reports:
                await self.on_heard(report)
