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
- **Word timings.** The CLI reports none, so each sentence's samples are shared among its words
  in proportion to their lengths in characters (:func:`char_timings`); words tile the samples,
  so barge-in's :func:`~voices.engine.heard_until` works, at sentence precision or better.

Prosody and style (:func:`espeak_settings`; measured on espeak-ng 1.51, ``es``, see the
constants): ``rate`` → ``-s`` words per minute (175 * rate, 80 to 450; duration is close
to inversely proportional), ``pitch`` → ``-p`` (50 + 75 * log2 pitch, 0 to 99: about 0.66 to
1.7 times the default F0), ``volume`` → ``-a`` (100 * volume, 0 to 200; espeak-ng limits its
own peaks).
A style multiplies each by its preset (:data:`voices.emotion.PRESETS`, or the voice's own); a
style that whispers (``whisper`` ≥ 0.5) uses espeak-ng's ``+whisper`` variant. Piper's absolute
knobs (``length_scale``, the noise scales, ``speaker_id``), SSML phonemes (IPA, which espeak-ng's
text input does not read) and the presets' ``variation``/``timing`` have no espeak-ng meaning and
are ignored.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass

import anyio
import anyio.abc
from anyio.lowlevel import RunVar

from pipeline.errors import ClientError, ExecutorClosed, ModelError, Overloaded
from voices.alignment import word_spans
from voices.chunking import ClauseChunker
from voices.emotion import PRESETS, Expression, expression
from voices.engine import (
    BYTES_PER_SAMPLE,
    Emotion,
    Prosody,
    SpeechChunk,
    SpeechPlan,
    Style,
    WordTiming,
    as_plan,
)
from voices.piper_engine import MAX_PAUSE_MS

__all__ = ["EspeakEngine", "EspeakSettings", "EspeakStatistics", "char_timings", "parse_wav"]

#: espeak-ng's defaults and limits (``espeak-ng --help``)
DEFAULT_WPM = 175
WPM_RANGE = (80, 450)
DEFAULT_PITCH = 50
PITCH_RANGE = (0, 99)
#: ``-p`` steps per octave of F0 (measured: -p 0, 50, 99 give 66, 100, 169 Hz for ``es``)
PITCH_STEPS_PER_OCTAVE = 75.0
DEFAULT_AMPLITUDE = 100
AMPLITUDE_RANGE = (0, 200)
#: a style whispers from this much on (espeak-ng's whisper is a voice variant, all or nothing)
WHISPER_FROM = 0.5
#: sentences longer than this are cut (at a clause end, or else a space) into several processes
SENTENCE_CHARS = 250
#: the most WAV bytes one process may write (a 250-character sentence at 80 wpm is ~2 MB)
MAX_WAV_BYTES = 32 * 1024 * 1024
_STDERR_BYTES = 4096
_WARM_UP_TEXT = "a"
#: ``(en-gb 3)`` in the Other Languages column of ``espeak-ng --voices``
_OTHER_LANGUAGE = re.compile(r"\(([^\s()]+) \d+\)")


@dataclass(frozen=True, slots=True)
class EspeakSettings:
    """espeak-ng's command-line knobs for one segment."""

    wpm: int
    pitch: int
    amplitude: int
    whisper: bool

    def argv(self, voice: str) -> list[str]:
        variant = f"{voice}+whisper" if self.whisper and "+" not in voice else voice
        return [
            "-v", variant, "-s", str(self.wpm), "-p", str(self.pitch), "-a", str(self.amplitude),
        ]  # fmt: skip


def espeak_settings(
    prosody: Prosody, style: Style | None, presets: Mapping[Emotion, Expression] = PRESETS
) -> EspeakSettings:
    """espeak-ng's knobs for ``prosody`` and ``style`` (see the module docstring)."""
    e = expression(style, presets)
    rate = max(prosody.rate * e.rate, 1e-3)
    pitch = max(prosody.pitch * e.pitch, 1e-3)
    return EspeakSettings(
        wpm=_clamp(round(DEFAULT_WPM * rate), WPM_RANGE),
        pitch=_clamp(round(DEFAULT_PITCH + PITCH_STEPS_PER_OCTAVE * math.log2(pitch)), PITCH_RANGE),
        amplitude=_clamp(round(DEFAULT_AMPLITUDE * prosody.volume * e.volume), AMPLITUDE_RANGE),
        whisper=e.whisper >= WHISPER_FROM,
    )


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return min(max(value, bounds[0]), bounds[1])


def parse_wav(data: bytes) -> tuple[int, bytes]:
    """``(sample_rate, pcm)`` of a mono PCM16 WAV as espeak-ng writes it to a pipe (its sizes
    are placeholders: the data runs to the end). Raises :class:`ValueError`."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    at = 12
    rate: int | None = None
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        body = data[at + 8 : at + 8 + size]
        if kind == b"fmt ":
            if len(body) < 16:
                raise ValueError("a short fmt chunk")
            audio_format = int.from_bytes(body[0:2], "little")
            channels = int.from_bytes(body[2:4], "little")
            bits = int.from_bytes(body[14:16], "little")
            if (audio_format, channels, bits) != (1, 1, 16):
                raise ValueError(f"not mono PCM16 (format {audio_format}, {channels} ch, {bits})")
            rate = int.from_bytes(body[4:8], "little")
        elif kind == b"data":
            if rate is None:
                raise ValueError("data before fmt")
            pcm = body  # a placeholder size just runs to the end
            return rate, pcm[: len(pcm) - len(pcm) % BYTES_PER_SAMPLE]
        at += 8 + size + size % 2
    raise ValueError("no data chunk")


def char_timings(
    spans: Sequence[tuple[int, int]], sample_offset: int, samples: int
) -> tuple[WordTiming, ...]:
    """Words (``spans`` of text) sharing ``samples`` from ``sample_offset`` in proportion to
    their lengths in characters: they tile the samples, in order, each owning the pause after
    it (the first also owns the leading silence)."""
    if not spans:
        return ()
    total = sum(end - start for start, end in spans)
    bounds = [sample_offset]
    running = 0
    for start, end in spans:
        running += end - start
        bounds.append(sample_offset + samples * running // total)
    return tuple(
        WordTiming(start, end, bounds[i], bounds[i + 1]) for i, (start, end) in enumerate(spans)
    )


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
    #: processes killed before they finished (cancelled requests, close)
    killed: int


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
        self._command: str | None = None
        self._sample_rate: int | None = None
        self._closed = False
        self._limiter: RunVar[anyio.CapacityLimiter] = RunVar(f"espeak-limiter-{id(self)}")
        # counters and the live processes, touched from the event loop and from close()
        self._lock = threading.Lock()
        self._live: set[anyio.abc.Process] = set()
        self._waiting = 0
        self._done = self._failed = self._rejected = self._cancelled = self._killed = 0

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
        if _base_voice(self.voice) not in voice_names(listing.stdout.decode(errors="replace")):
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
                f"(exit code {spoken.returncode}; {_tail(spoken.stderr)})"
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
        """The PCM of one sentence, from a process of its own."""
        limiter = self._limiter_here()
        with self._lock:
            if admit and self._waiting >= self.max_queue and limiter.available_tokens < 1:
                self._rejected += 1
                raise Overloaded(self.name, self._waiting, self.max_queue)
            self._waiting += 1
        try:
            await limiter.acquire()
        finally:
            with self._lock:
                self._waiting -= 1
        try:
            return await self._run(text, settings)
        finally:
            limiter.release()

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
                    await process.stdin.send(_plain(text).encode())
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
                f"espeak-ng failed: {error} (exit code {code}; {_tail(bytes(errors))})"
            ) from error
        if code != 0:
            raise ModelError(f"espeak-ng failed: exit code {code}; {_tail(bytes(errors))}")
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


def _plain(text: str) -> str:
    """``text`` as espeak-ng's plain-text input: no ``[[phoneme]]`` blocks, no NULs."""
    return text.replace("\x00", " ").replace("[[", "[ [").replace("]]", "] ]")


def _tail(stderr: bytes) -> str:
    text = stderr.decode(errors="replace").strip()
    return f"stderr: {text[-500:]}" if text else "no stderr"


def _base_voice(voice: str) -> str:
    return voice.partition("+")[0].lower()


def voice_names(listing: str) -> frozenset[str]:
    """Every name ``espeak-ng -v`` takes, from ``espeak-ng --voices``: languages, other
    languages, voice names and voice files (with and without their folder), lower-case."""
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        language, name, file = fields[1], fields[3], fields[4]
        names.update({language, name, file, file.rpartition("/")[2]})
        names.update(_OTHER_LANGUAGE.findall(" ".join(fields[5:])))
    return frozenset(n.lower() for n in names)
