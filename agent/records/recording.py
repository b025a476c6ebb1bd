"""Stereo call recordings: one WAV per call, the caller left and the agent right, written off
the event loop by the server's one writer.

::

    Session.push_audio ─► input_taps: CallAudio.heard ──┐    (what the caller sent, 16 kHz)
    playout ─► outbox ─► RecordingSink.send_audio ──────┤    (what the agent played, and its
                         RecordingSink.clear_audio ─────┤     barge-in cuts)
                                                        ▼
                          CallAudio.pending (bounded: DROP NEWEST, counted)
                                                        │  Recordings.run: a few times a second
                                                        ▼
                    worker thread: StereoMix (agent.records.recording_mix) ─► <dir>/<id>.wav.part
                    at the call's end: the rest, then renamed <id>.wav

Timing: each chunk is stamped on the call's own clock (the session's) as it passes: the
caller's when it arrived (less its length), the agent's when the playout sent it plus the
playout's ``lead`` (when it plays). :class:`~agent.records.recording_mix.StereoMix` lays both
sides out on one timeline from those stamps, so they line up; a barge-in cut silences the
agent's side from where the far side says it stopped (``clear_audio``'s answer), else from
the moment of the cut. The agent's audio is resampled to 16 kHz (its transport's rate may be
8, 24 or 48 kHz) on the writer's thread.

Never in the way of audio: the call's side only stamps and appends. Policy: DROP NEWEST,
counted (``voxline_recording_dropped_total{reason="queue_full"}``), once a call has
:data:`QUEUE_BYTES` of audio waiting (the writer is behind); ``write_failed``: the file could
not be written (logged once; that call's recording stops, the call goes on);
``unavailable``: audio of a call still running when the writer stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.abc
import anyio.to_thread

from agent.metrics import METRICS
from agent.records.recording_mix import LEFT, RIGHT, StereoMix
from agent.session import Session
from agent.session_events import CallSink, SessionEvent
from pipeline.errors import ConfigError
from pipeline.events import PIPELINE_RATE
from pipeline.resample import StreamResampler

__all__ = [
    "QUEUE_BYTES",
    "RATE",
    "CallAudio",
    "RecordingSink",
    "Recordings",
    "recording_directory",
    "recording_name",
]

log = logging.getLogger("voxline.records")

#: the recordings' sample rate (the pipeline's: the caller's audio as the ASR hears it)
RATE = PIPELINE_RATE
#: PCM of one call waiting for the writer, at most (about 30 s of both sides at 16 kHz)
QUEUE_BYTES = 2 << 20
#: items of one call waiting, at most (cuts and ends of replies count here, not in bytes)
QUEUE_ITEMS = 8192
#: seconds the writer gathers before writing a batch (it wakes a few times a second at most)
BATCH_S = 0.25
#: seconds of a side's lateness that still counts as a stream's jitter (M1)
SLACK_S = 0.2
#: seconds kept before they are written: how far back a cut may reach (M4)
HOLD_S = 3.0
#: seconds the recordings still open at shutdown have to be written
FLUSH_S = 10.0
#: replies whose start is kept, for a cut that comes after their audio ended
KEPT_REPLIES = 8

SETTING = "$.server.records.recording_dir"


def recording_directory(value: str) -> Path:
    """The directory ``records.recording_dir`` names, created if missing (``~`` expands);
    :class:`~pipeline.errors.ConfigError` naming the key when it cannot be written to."""
    path = Path(value).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(SETTING, f"{value!r} is a file, not a directory") from None
    except OSError as error:
        raise ConfigError(SETTING, f"cannot create {value!r}: {error.strerror}") from None
    if not path.is_dir():
        raise ConfigError(SETTING, f"{value!r} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(SETTING, f"{value!r} cannot be written to")
    return path


def recording_name(call_id: str) -> str:
    """The file name of a call's recording: its id (characters a file name may not hold
    replaced) and ``.wav``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", call_id)[:200] + ".wav"


# -- what a call's side appends ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Heard:
    due: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class _Played:
    generation: int
    due: int
    pcm: bytes
    rate: int


@dataclass(frozen=True, slots=True)
class _Ended:
    generation: int


@dataclass(frozen=True, slots=True)
class _Cut:
    generation: int
    due: int
    #: samples of it the far side says it played, at ``rate`` (``None``: it does not say)
    played: int | None
    rate: int


_Item = _Heard | _Played | _Ended | _Cut


@dataclass(eq=False)
class CallAudio:
    """One call's recording: the call's side stamps and appends (never waits, never raises);
    the writer's thread lays it out and writes it."""

    call_id: str
    path: Path
    #: seconds since the call started, on its clock
    now: Callable[[], float]
    #: the playout's lead: how long before it plays a frame goes out
    lead: float
    wake: Callable[[], None]
    pending: list[_Item] = field(default_factory=list)
    pending_bytes: int = 0
    ended: bool = False
    #: the writer's side
    failed: bool = False
    mix: StereoMix = field(
        default_factory=lambda: StereoMix(
            RATE, slack=round(SLACK_S * RATE), hold=round(HOLD_S * RATE)
        )
    )
    out: wave.Wave_write | None = None
    file: BinaryIO | None = None  # what ``out`` writes to
    resampler: StreamResampler | None = None
    resampling: int | None = None  # the reply the resampler is on
    starts: dict[int, int] = field(default_factory=dict)  # each reply's first position

    @property
    def name(self) -> str:
        return self.path.name

    # -- the call's side (on the event loop) -------------------------------------------------

    def heard(self, pcm: bytes) -> None:
        """Caller audio as it arrived (16 kHz PCM16)."""
        samples = len(pcm) // 2
        self._add(_Heard(round(self.now() * RATE) - samples, pcm), len(pcm))

    def played(self, generation: int, pcm: bytes, rate: int) -> None:
        """Agent audio as the playout sent it (PCM16 at ``rate``)."""
        self._add(_Played(generation, round((self.now() + self.lead) * RATE), pcm, rate), len(pcm))

    def reply_ended(self, generation: int) -> None:
        self._add(_Ended(generation), 0)

    def cut(self, generation: int, played: int | None, rate: int) -> None:
        """A barge-in cleared ``generation`` (``played``: the far side's answer)."""
        self._add(_Cut(generation, round(self.now() * RATE), played, rate), 0)

    def end(self) -> None:
        """The call is over: the writer finishes the file."""
        self.ended = True
        self.wake()

    def _add(self, item: _Item, size: int) -> None:
        if self.ended or self.failed:
            if not self.failed:  # audio after the call's end: the writer has stopped
                METRICS.recording_dropped("unavailable")
            else:
                METRICS.recording_dropped("write_failed")
            return
        if self.pending_bytes + size > QUEUE_BYTES or len(self.pending) >= QUEUE_ITEMS:
            METRICS.recording_dropped("queue_full")
            return
        self.pending.append(item)
        self.pending_bytes += size
        if len(self.pending) == 1:
            self.wake()

    # -- the writer's side (on its thread) ---------------------------------------------------

    def write(self, items: list[_Item], final: bool) -> None:
        """Lay ``items`` out and write what is final (``final``: all of it, and close)."""
        part = self.path.with_name(self.path.name + ".part")
        if self.out is None:
            # both open for the whole call, closed at its end (or by abandon)
            self.file = part.open("wb")
            self.out = wave.open(self.file, "wb")  # noqa: SIM115
            self.out.setnchannels(2)
            self.out.setsampwidth(2)
            self.out.setframerate(RATE)
        for item in items:
            self._apply(item)
        if final and self.resampler is not None and self.resampling is not None:
            self.mix.place(RIGHT, self.mix.end_of(RIGHT), self.resampler.flush())
        frames = self.mix.take(final=final)
        if frames:
            self.out.writeframes(frames)
        if final:
            self.out.close()
            if self.file is not None:
                self.file.close()
            os.replace(part, self.path)

    def _apply(self, item: _Item) -> None:
        mix = self.mix
        match item:
            case _Heard(due=due, pcm=pcm):
                mix.place(LEFT, due, pcm)
            case _Played(generation=generation, due=due, pcm=pcm, rate=rate):
                resampler = self.resampler
                if resampler is None or resampler.in_rate != rate:
                    self.resampler = resampler = StreamResampler(rate, RATE)
                self.resampling = generation
                at = mix.place(RIGHT, due, resampler.process(pcm))
                if generation not in self.starts:
                    self.starts[generation] = at
                    while len(self.starts) > KEPT_REPLIES:
                        del self.starts[next(iter(self.starts))]
            case _Ended(generation=generation):
                if self.resampler is not None and generation == self.resampling:
                    mix.place(RIGHT, mix.end_of(RIGHT), self.resampler.flush())
                    self.resampling = None
            case _Cut(generation=generation, due=due, played=played, rate=rate):
                start = self.starts.get(generation)
                if start is None:
                    return  # nothing of it was played
                if self.resampler is not None and generation == self.resampling:
                    self.resampler.flush()  # what it holds was never played
                    self.resampling = None
                at = due if played is None else start + round(played * RATE / rate)
                mix.cut(RIGHT, max(at, start))

    def abandon(self) -> None:
        """The file could not be written: close what is open (quietly)."""
        self.failed = True
        for step in (self.out, self.file):
            if step is not None:
                with contextlib.suppress(Exception):
                    step.close()
        self.out = self.file = None


class RecordingSink:
    """``sink`` forwarded every call unchanged, with the agent's audio and its cuts told to
    ``audio``; keeps the sink it wraps as ``sink`` (:func:`agent.call_watch.transport_sink`)."""

    def __init__(self, sink: CallSink, audio: CallAudio) -> None:
        self.sink = sink
        self.audio = audio

    @property
    def output_rate(self) -> int:
        return self.sink.output_rate

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        self.audio.played(generation, pcm, self.sink.output_rate)
        await self.sink.send_audio(generation, pcm)

    async def end_audio(self, generation: int) -> None:
        await self.sink.end_audio(generation)
        self.audio.reply_ended(generation)

    async def clear_audio(self, generation: int) -> int | None:
        played = await self.sink.clear_audio(generation)
        self.audio.cut(generation, played, self.sink.output_rate)
        return played

    async def send_event(self, event: SessionEvent) -> None:
        await self.sink.send_event(event)


class Recordings:
    """The server's call recordings, in ``directory`` (see the module doc)."""

    def __init__(self, directory: Path, *, batch_s: float = BATCH_S) -> None:
        self.directory = directory
        self.batch_s = batch_s
        self._calls: dict[str, CallAudio] = {}
        self._wake = anyio.Event()
        self._limiter = anyio.CapacityLimiter(1)
        self._closed = False

    def start(self, session: Session) -> CallAudio:
        """Record ``session``'s call from now on: its caller's audio (the session's input
        taps) and its agent's (a :class:`RecordingSink` around its sink)."""
        clock, start = session.clock, session.clock.now()
        audio = self.open(session.id, lambda: clock.now() - start, lead=session.playout.lead)
        if not audio.ended:
            session.input_taps.append(audio.heard)
            session.outbox.sink = RecordingSink(session.outbox.sink, audio)
        return audio

    def open(self, call_id: str, now: Callable[[], float], *, lead: float) -> CallAudio:
        """A new call's recording (``now``: seconds since it started, on its clock; ``lead``:
        how long before it plays the agent's audio goes out). Once the writer has stopped it
        keeps nothing."""
        audio = CallAudio(
            call_id=call_id,
            path=self.directory / recording_name(call_id),
            now=now,
            lead=lead,
            wake=self._ring,
        )
        if self._closed:
            audio.ended = True
        else:
            self._calls[call_id] = audio
        return audio

    def _ring(self) -> None:
        self._wake.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The writer: what the calls append, written every :attr:`batch_s` or so, until
        cancelled; then what is open is finished (:data:`FLUSH_S` at most)."""
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await anyio.sleep(self.batch_s)  # gather: one thread hop for many frames
                await self.flush()
        finally:
            await self.aclose()

    async def flush(self, *, final: bool = False) -> None:
        """Write what the calls have appended; the calls that ended (``final``: every call)
        are finished."""
        work: list[tuple[CallAudio, list[_Item], bool]] = []
        for audio in list(self._calls.values()):
            items, audio.pending, audio.pending_bytes = audio.pending, [], 0
            done = audio.ended or final
            if done:
                audio.ended = True
                del self._calls[audio.call_id]
            if items or done:
                work.append((audio, items, done))
        if work:
            await anyio.to_thread.run_sync(_write_all, work, limiter=self._limiter)

    async def aclose(self) -> None:
        """No more recordings: what is open is finished and saved."""
        self._closed = True
        with anyio.move_on_after(FLUSH_S, shield=True):
            await self.flush(final=True)

    def delete_before(self, cutoff: float) -> int:
        """Delete the recordings last written before ``cutoff`` (unix seconds): retention.
        Blocking: call it on a worker thread."""
        deleted = 0
        for path in self.directory.glob("*.wav"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    deleted += 1
        return deleted


def _write_all(work: list[tuple[CallAudio, list[_Item], bool]]) -> None:
    """On the writer's thread: each call's batch; a call that fails stops being recorded."""
    for audio, items, final in work:
        if audio.failed:
            continue
        try:
            audio.write(items, final)
        except Exception as error:
            audio.abandon()
            METRICS.recording_dropped("write_failed", len(items))
            log.error(
                "call %s: recording failed (%s: %s); the call goes on",
                audio.call_id,
                type(error).__name__,
                error,
            )
            continue
        if final:
            log.info("call %s: recording saved (%s)", audio.call_id, audio.name)
