"""espeak-ng speech for Voxline: a voice in (almost) any language, robotic, out of process.

:class:`EspeakEngine` is a :class:`~voices.engine.TTSEngine` shared by every session. It is the
fallback for languages no Piper voice speaks (speech-to-speech translation needs one per target
language). espeak-ng is GPL-3.0: Voxline never links it, it runs the ``espeak-ng`` command, one
short-lived process per sentence, text on stdin (never on the command line, so text that starts
with ``-`` is text), WAV on stdout. SSML is off (no ``-m``: ``<`` is read as text) and
espeak-ng's ``[[phoneme]]`` input is escaped, so the text is always read as plain text.

- **Admission control.** A request that finds ``max_queue`` requests waiting for a process is
  refused with :class:`~pipeline.errors.Overloaded` (at its first sentence; an admitted request
  is never refused later).
- **Bounded processes.** At most ``max_processes`` espeak-ng processes run at once (a
  :class:`anyio.CapacityLimiter` per event loop); requests take turns sentence by sentence.
- **Cancellation.** Closing a request's iterator (or cancelling the scope that reads it) kills
  its running process and reaps it (shielded), so no zombie is left; :meth:`EspeakEngine.close`
  kills every running process and fails their requests with ``ExecutorClosed``.
- **Failures.** A missing binary or a voice espeak-ng does not have is a
  :class:`~pipeline.errors.ModelError` at :meth:`EspeakEngine.start`; a process that fails (or
  writes no WAV) mid-request fails that request only, with a ``ModelError``.
- **Hangs.** Each process has a deadline (:class:`~pipeline.breaker.Deadline`, as Piper's
  requests: ``deadline_s`` plus ``deadline_per_audio`` times the audio its sentence should
  make, its characters at :data:`~voices.piper_engine.CHARS_PER_SECOND` at its words per
  minute): one that misses it is killed and reaped, and its request fails with a ``ModelError``
  saying it timed out (``timeouts`` in :meth:`EspeakEngine.statistics`). There is no worker to
  restart: the next sentence starts a process of its own.
- **Circuit breaker.** As Piper's (:class:`~pipeline.breaker.Breaker`): after
  ``breaker_failures`` processes in a row failed (an error, no WAV, a hang), requests are
  refused at once with a ``ModelError`` for ``breaker_cooldown_s``; then one probes.
- **Word timings.** The CLI reports none, so each sentence's samples are shared among its words
  in proportion to their lengths in characters (:func:`char_timings`); words tile the samples,
  so barge-in's :func:`~voices.engine.heard_until` works, at sentence precision or better.

Prosody and style map onto espeak-ng's options, and its output and voice listing are read, in
:mod:`voices.espeak_cli`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Literal

import anyio
import anyio.abc
from anyio.lowlevel import RunVar

from pipeline.breaker import Breaker, BreakerStatistics, Deadline
from pipeline.errors import ClientError, ExecutorClosed, ModelError, Overloaded
from voices.alignment import word_spans
from voices.chunking import ClauseChunker
from voices.emotion import PRESETS, Expression
from voices.engine import BYTES_PER_SAMPLE, Emotion, Prosody, SpeechChunk, SpeechPlan, as_plan
from voices.espeak_cli import (
    DEFAULT_WPM,
    EspeakSettings,
    base_voice,
    char_timings,
    espeak_settings,
    parse_wav,
    plain_text,
    stderr_tail,
    voice_names,
)
from voices.piper_engine import CHARS_PER_SECOND, MAX_PAUSE_MS

__all__ = [
    "EspeakEngine",
    "EspeakSettings",
    "EspeakStatistics",
    "char_timings",
    "espeak_settings",
    "parse_wav",
    "voice_names",
]

#: sentences longer than this are cut (at a clause end, or else a space) into several processes
SENTENCE_CHARS = 250
#: the most WAV bytes one process may write (a 250-character sentence at 80 wpm is ~2 MB)
MAX_WAV_BYTES = 32 * 1024 * 1024
_STDERR_BYTES = 4096
_WARM_UP_TEXT = "a"


@dataclass(frozen=True, slots=True)
class EspeakStatistics:
    name: str
    voice: str
    #: started and not closed
    running: bool
    #: espeak-ng processes running now (one per sentence being spoken), and their ids
    in_flight: int
    pids: tuple[int, ...]
    max_processes: int
    #: requests waiting for a process now
    queue_depth: int
    max_queue: int
    requests_done: int
    #: requests that failed: a process exited with an error or wrote no WAV
    requests_failed: int
    rejected: int
    #: callers that stopped reading before the end of their request
    cancelled: int
    #: processes killed before they finished (cancelled requests, close, deadlines)
    killed: int
    #: processes that missed their deadline (killed; their requests failed)
    timeouts: int
    #: the circuit breaker: its state and how often it refused
    breaker: BreakerStatistics


class EspeakEngine:
    """espeak-ng voice ``voice`` (an espeak-ng voice or language name: ``es``, ``fr-fr``,
    ``roa/it``, ``en-us+f3``) through short-lived processes; see the module docstring.

    ``presets`` replace the shared emotion presets for this voice.
    """

    def __init__(
        self,
        voice: str = "en",
        *,
        executable: str = "espeak-ng",
        presets: Mapping[Emotion, Expression] | None = None,
        max_processes: int = 2,
        max_queue: int = 64,
        max_chars: int = 5000,
        startup_timeout: float = 30.0,
        deadline_s: float = 2.0,
        deadline_per_audio: float = 0.5,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 10.0,
    ) -> None:
        if max_processes < 1 or max_queue < 0:
            raise ValueError("need at least one process and a queue of 0 or more")
        self.name = "espeak"
        self.voice = voice
        self.executable = executable
        self.presets = dict(presets) if presets is not None else PRESETS
        self.max_processes = max_processes
        self.max_queue = max_queue
        self.max_chars = max_chars
        self.startup_timeout = startup_timeout
        #: each process's time budget, from the audio its sentence should make
        self.deadline = Deadline(deadline_s, deadline_per_audio)
        self._breaker = Breaker(self.name, failures=breaker_failures, cooldown_s=breaker_cooldown_s)
        self._command: str | None = None
        self._sample_rate: int | None = None
        self._closed = False
        self._limiter: RunVar[anyio.CapacityLimiter] = RunVar(f"espeak-limiter-{id(self)}")
        # counters and the live processes, touched from the event loop and from close()
        self._lock = threading.Lock()
        self._live: set[anyio.abc.Process] = set()
        self._waiting = 0
        self._done = self._failed = self._rejected = self._cancelled = self._killed = 0
        self._timeouts = 0

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Find ``espeak-ng``, check that it has the voice, and speak a word with it to learn
        its sample rate (blocking; in async code ``await anyio.to_thread.run_sync(...)``).

        Raises :class:`~pipeline.errors.ModelError` when the binary or the voice is missing.
        """
        if self._closed:
            raise ExecutorClosed("the espeak-ng engine is closed")
        if self._sample_rate is not None:
            return
        command = shutil.which(self.executable)
        if command is None:
            raise ModelError(
                f"no {self.executable!r} command: install espeak-ng (apt package espeak-ng)"
            )
        listing = self._run_blocking([command, "--voices"], b"")
        if base_voice(self.voice) not in voice_names(listing.stdout.decode(errors="replace")):
            raise ModelError(
                f"espeak-ng has no voice {self.voice!r} (`espeak-ng --voices` lists them)"
            )
        settings = espeak_settings(Prosody(), None, self.presets)
        argv = [command, *settings.argv(self.voice), "-b", "1", "--stdin", "--stdout"]
        spoken = self._run_blocking(argv, _WARM_UP_TEXT.encode())
        try:
            rate, _ = parse_wav(spoken.stdout)
        except ValueError as error:
            raise ModelError(
                f"espeak-ng voice {self.voice!r} did not speak: {error} "
                f"(exit code {spoken.returncode}; {stderr_tail(spoken.stderr)})"
            ) from error
        self._command = command
        self._sample_rate = rate

    def _run_blocking(self, argv: list[str], text: bytes) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                argv, input=text, capture_output=True, timeout=self.startup_timeout
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ModelError(f"espeak-ng did not run: {error}") from error

    def close(self) -> None:
        """Refuse new requests; kill running processes (their requests fail with
        ``ExecutorClosed``)."""
        with self._lock:
            self._closed = True
            live = list(self._live)
        for process in live:
            with contextlib.suppress(ProcessLookupError, OSError):
                process.kill()

    def __enter__(self) -> EspeakEngine:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def sample_rate(self) -> int:
        if self._sample_rate is None:
            raise RuntimeError("the espeak-ng engine has not started yet")
        return self._sample_rate

    @property
    def processes(self) -> tuple[anyio.abc.Process, ...]:
        """The espeak-ng processes running now (for monitoring, and for tests)."""
        with self._lock:
            return tuple(self._live)

    def statistics(self) -> EspeakStatistics:
        with self._lock:
            return EspeakStatistics(
                name=self.name,
                voice=self.voice,
                running=self._sample_rate is not None and not self._closed,
                in_flight=len(self._live),
                pids=tuple(sorted(p.pid for p in self._live)),
                max_processes=self.max_processes,
                queue_depth=self._waiting,
                max_queue=self.max_queue,
                requests_done=self._done,
                requests_failed=self._failed,
                rejected=self._rejected,
                cancelled=self._cancelled,
                killed=self._killed,
                timeouts=self._timeouts,
                breaker=self._breaker.statistics(),
            )

    # -- requests --------------------------------------------------------------------------

    async def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` or a plan; see :meth:`voices.engine.TTSEngine.synthesize`.

        One chunk per sentence (and one of silence per pause); marks ride on the first chunk
        of their segment, marks at the very end get an empty chunk of their own.
        """
        plan = as_plan(text, prosody)
        self._check(plan)
        rate = self.sample_rate
        outcome = "cancelled"
        try:
            text_offset = sample_offset = text_end = 0
            marks: list[str] = []
            first = True
            for segment in plan.segments:
                marks.extend(segment.marks)
                settings = espeak_settings(segment.prosody, segment.style, self.presets)
                for sentence in _sentences(segment.text):
                    pcm = await self._speak(sentence.text, settings, admit=first)
                    first = False
                    start = text_offset + sentence.start
                    spans = [(start + a, start + b) for a, b in word_spans(sentence.text)]
                    words = char_timings(spans, sample_offset, len(pcm) // BYTES_PER_SAMPLE)
                    text_end = words[-1].text_end if words else text_end
                    chunk = SpeechChunk(
                        rate, pcm, sample_offset, words[0].text_start if words else text_end,
                        text_end, words, tuple(marks),
                    )  # fmt: skip
                    marks = []
                    sample_offset = chunk.end_offset
                    yield chunk
                text_offset += len(segment.text)
                if segment.pause_ms > 0:
                    pause = bytes(segment.pause_ms * rate // 1000 * BYTES_PER_SAMPLE)
                    chunk = SpeechChunk(
                        rate, pause, sample_offset, text_end, text_end, (), tuple(marks)
                    )
                    marks = []
                    sample_offset = chunk.end_offset
                    yield chunk
            if marks:
                yield SpeechChunk(rate, b"", sample_offset, text_end, text_end, (), tuple(marks))
            outcome = "done"
        except Overloaded:
            outcome = "rejected"  # counted where it was refused
            raise
        except (ModelError, ExecutorClosed):
            outcome = "failed"
            raise
        finally:
            with self._lock:
                if outcome == "done":
                    self._done += 1
                elif outcome == "failed":
                    self._failed += 1
                else:  # the caller closed the generator or was cancelled
                    self._cancelled += 1

    def _check(self, plan: SpeechPlan) -> None:
        length = sum(len(segment.text) for segment in plan.segments)
        if length > self.max_chars:
            raise ClientError(f"{length} characters to speak at once (limit {self.max_chars})")
        if any(not 0 <= segment.pause_ms <= MAX_PAUSE_MS for segment in plan.segments):
            raise ClientError(f"pauses must last 0 to {MAX_PAUSE_MS} ms")
        if self._closed:
            raise ExecutorClosed("the espeak-ng engine is closed")

    def _limiter_here(self) -> anyio.CapacityLimiter:
        """This event loop's limiter (anyio primitives belong to one loop)."""
        try:
            return self._limiter.get()
        except LookupError:
            limiter = anyio.CapacityLimiter(self.max_processes)
            self._limiter.set(limiter)
            return limiter

    async def _speak(self, text: str, settings: EspeakSettings, *, admit: bool) -> bytes:
        """The PCM of one sentence, from a process of its own, within its deadline; the
        outcome judges the breaker (a success, a failure, or no verdict: cancelled, closed)."""
        limiter = self._limiter_here()
        with self._lock:
            now = time.monotonic()
            if not self._breaker.admit(now):
                why = self._breaker.refusal(now)
                raise ModelError(f"the espeak-ng voice is not taking requests: it {why}")
            if admit and self._waiting >= self.max_queue and limiter.available_tokens < 1:
                self._rejected += 1
                self._breaker.released(now)
                raise Overloaded(self.name, self._waiting, self.max_queue)
            self._waiting += 1
        verdict: Literal["success", "failure"] | None = None
        try:
            try:
                await limiter.acquire()
            finally:
                with self._lock:
                    self._waiting -= 1
            try:
                pcm = await self._within_deadline(text, settings)
            finally:
                limiter.release()
            verdict = "success"
            return pcm
        except ModelError:
            verdict = "failure"
            raise
        finally:
            with self._lock:
                now = time.monotonic()
                if verdict == "success":
                    self._breaker.succeeded(now)
                elif verdict == "failure":
                    self._breaker.failed(now)
                else:
                    self._breaker.released(now)

    async def _within_deadline(self, text: str, settings: EspeakSettings) -> bytes:
        """:meth:`_run`, killed (and reaped) when it misses its deadline: a ``ModelError``."""
        audio_s = len(text) / CHARS_PER_SECOND * DEFAULT_WPM / settings.wpm
        budget = self.deadline.budget(audio_s)
        with anyio.move_on_after(budget) as deadline:
            return await self._run(text, settings)
        assert deadline.cancelled_caught  # (only the deadline's cancel ends up here)
        with self._lock:
            self._timeouts += 1
        raise ModelError(f"espeak-ng timed out: a sentence not spoken in {budget:.1f} s")

    async def _run(self, text: str, settings: EspeakSettings) -> bytes:
        assert self._command is not None
        argv = [self._command, *settings.argv(self.voice), "-b", "1", "--stdin", "--stdout"]
        output = bytearray()
        errors = bytearray()
        try:
            process = await anyio.open_process(argv)
        except OSError as error:
            raise ModelError(f"espeak-ng did not start: {error}") from error
        with self._lock:
            if self._closed:
                process.kill()
            self._live.add(process)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_keep_tail, process.stderr, errors, _STDERR_BYTES)
                assert process.stdin is not None
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await process.stdin.send(plain_text(text).encode())
                await process.stdin.aclose()
                if not await _drain(process.stdout, output, MAX_WAV_BYTES):
                    process.kill()
                code = await process.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    with self._lock:
                        self._killed += 1
                    process.kill()
                await process.aclose()
            raise
        finally:
            with self._lock:
                self._live.discard(process)
        await process.aclose()
        if self._closed:
            raise ExecutorClosed("the espeak-ng engine closed")
        if len(output) > MAX_WAV_BYTES:
            raise ModelError(f"espeak-ng wrote more than {MAX_WAV_BYTES} bytes for a sentence")
        try:
            rate, pcm = parse_wav(bytes(output))
        except ValueError as error:
            raise ModelError(
                f"espeak-ng failed: {error} (exit code {code}; {stderr_tail(bytes(errors))})"
            ) from error
        if code != 0:
            raise ModelError(f"espeak-ng failed: exit code {code}; {stderr_tail(bytes(errors))}")
        if rate != self._sample_rate:
            raise ModelError(f"espeak-ng spoke at {rate} Hz, not {self._sample_rate} Hz")
        return pcm


async def _drain(stream: anyio.abc.ByteReceiveStream | None, into: bytearray, limit: int) -> bool:
    """Read ``stream`` to its end into ``into``, keeping at most ``limit`` (+ one read) bytes;
    ``False`` when it was cut at the limit."""
    if stream is None:
        return True
    async for data in stream:
        into += data
        if len(into) > limit:
            return False
    return True


async def _keep_tail(
    stream: anyio.abc.ByteReceiveStream | None, into: bytearray, limit: int
) -> None:
    """Read ``stream`` to its end (so the process never blocks on it), keeping its last
    ``limit`` bytes in ``into``."""
    if stream is None:
        return
    async for data in stream:
        into += data
        del into[:-limit]


def _sentences(text: str) -> list[_Sentence]:
    chunker = ClauseChunker(min_clause_chars=SENTENCE_CHARS + 1, max_chars=SENTENCE_CHARS)
    chunks = [*chunker.feed(text), *chunker.flush()]
    return [_Sentence(c.text, c.start) for c in chunks if c.text.strip()]


@dataclass(frozen=True, slots=True)
class _Sentence:
    text: str
    #: where it starts in its segment's text
    start: int
