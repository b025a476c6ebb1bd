"""StyleTTS2 speech (the GPU profile) on a :class:`~pipeline.executor.ModelExecutor`.

:class:`StyleTTS2Engine` is a :class:`~voices.engine.TTSEngine` shared by every session. The
model (:mod:`voices.styletts2.model`, loaded from a local checkpoint and ``config.yml`` by
:mod:`voices.styletts2.checkpoint`; nothing is downloaded) lives on one executor worker thread
pinned to its device, so a CUDA context stays on the thread that made it. torch is imported
only when an engine is constructed: the embedded default profile never imports it.

Streaming: each plan segment is cut into clauses (:class:`~voices.chunking.ClauseChunker`),
and each clause is one executor request, synthesized as a whole and yielded as one chunk, so
requests of different sessions interleave clause by clause. Word timings come from the
model's own predicted durations (each token's frames, summed per word); a word owns the space
and punctuation after it and, on a segment's last clause, the segment's pause.

Styles: see :mod:`voices.styletts2.styles`. ``references`` give reference audio (mono WAV
files, or float arrays at the model's rate) per emotion; the neutral one is the voice's
default reference, and an emotion with its own reference moves the reference style towards
it by the intensity. Without references the style comes from the text alone (diffusion),
as StyleTTS2 does for single-speaker models; a multispeaker model needs a neutral reference
(its diffusion is conditioned on the reference style), checked when the engine is made.

Cancellation: closing the generator (or cancelling the scope that reads it) stops before the
next clause; a clause being synthesized is finished by the worker and thrown away.
"""

from __future__ import annotations

import contextlib
import wave
import zlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np

from pipeline.errors import ClientError, ModelError
from pipeline.executor import ExecutorStatistics, ModelExecutor
from voices import dsp
from voices.chunking import ClauseChunker
from voices.emotion import PRESETS, Expression
from voices.engine import (
    Emotion,
    PhonemeSpan,
    Prosody,
    SpeechChunk,
    SpeechPlan,
    SpeechSegment,
    Style,
    WordTiming,
    as_plan,
)
from voices.styletts2.config import StyleTTS2Config, load_config
from voices.styletts2.phonemes import N_SYMBOLS, Phonemizer, TokenizedClause
from voices.styletts2.styles import Rendering, StyleDefaults, rendering

if TYPE_CHECKING:
    import torch

    from voices.styletts2.model import StyleTTS2Model

__all__ = ["MAX_PAUSE_MS", "Reference", "StyleTTS2Engine"]

NEUTRAL_DEFAULTS = StyleDefaults()
#: the longest pause a plan may ask for
MAX_PAUSE_MS = 10_000
#: reference audio: a WAV file, or mono float samples at the model's rate
Reference = str | Path | np.ndarray


@dataclass(frozen=True, slots=True)
class _Clause:
    text: str
    tokenized: TokenizedClause
    rendering: Rendering
    style: Style | None
    pause_samples: int


@dataclass(frozen=True, slots=True)
class _Spoken:
    pcm: bytes
    #: (clause text start, clause text end, first sample, end sample) per word
    words: tuple[tuple[int, int, int, int], ...]


class StyleTTS2Engine:
    """StyleTTS2 on one device; see the module docstring.

    ``checkpoint`` and ``config`` are local files (``plbert``: PL-BERT's ``config.yml``, see
    :func:`~voices.styletts2.config.load_config`). ``device`` is a torch device (``cuda``,
    ``cuda:1``, ``cpu``); ``threads`` sets torch's CPU threads (``None``: torch's default).
    ``defaults`` are the neutral knobs, ``presets`` the emotion presets, ``style`` the voice's
    default style. ``seed`` makes the diffusion noise repeatable (one seed per clause text).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        config: str | Path,
        *,
        device: str = "cuda",
        plbert: str | Path | None = None,
        references: Mapping[Emotion, Reference] | None = None,
        language: str = "en-us",
        defaults: StyleDefaults = NEUTRAL_DEFAULTS,
        presets: Mapping[Emotion, Expression] = PRESETS,
        style: Style | None = None,
        threads: int | None = None,
        seed: int = 0,
        max_queue: int = 64,
        max_chars: int = 5000,
    ) -> None:
        try:
            import torch  # only the GPU profile pays for it
        except ImportError as error:
            raise ModelError("the StyleTTS2 engine needs torch (the 'gpu' extra)") from error
        self._torch = torch
        self.config: StyleTTS2Config = load_config(config, plbert)
        if self.config.model_params.n_token < N_SYMBOLS:
            raise ModelError(
                f"the StyleTTS2 config {config} has n_token "
                f"{self.config.model_params.n_token}; the phoneme table needs {N_SYMBOLS}"
            )
        if self.config.model_params.multispeaker and "neutral" not in (references or {}):
            raise ModelError(
                f"the StyleTTS2 model of {config} is multispeaker: it needs a neutral reference"
            )
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.defaults = defaults
        self.presets = dict(presets)
        self.style = style
        self.max_chars = max_chars
        self._references = dict(references or {})
        self._threads = threads
        self._seed = seed
        self._phonemizer = Phonemizer(language)
        self._model: StyleTTS2Model | None = None
        self._styles: dict[Emotion, torch.Tensor] = {}
        self._executor: ModelExecutor[_Clause, _Spoken] = ModelExecutor(
            f"styletts2:{self.checkpoint.name}",
            fn=self._speak,
            device=device,
            max_queue=max_queue,
            init=self._load,
        )

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model on its worker thread (blocking); raises :class:`ModelError`."""
        try:
            self._executor.start()
        except ModelError as error:
            cause = error.__cause__
            if isinstance(cause, ModelError):
                raise ModelError(str(cause)) from cause
            raise ModelError(f"StyleTTS2 failed to load: {cause!r}") from error

    def close(self) -> None:
        self._executor.close()

    def __enter__(self) -> StyleTTS2Engine:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def statistics(self) -> ExecutorStatistics:
        return self._executor.statistics()

    # -- requests --------------------------------------------------------------------------

    async def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` or a plan; see :meth:`voices.engine.TTSEngine.synthesize`."""
        plan = as_plan(text, prosody)
        length = sum(len(segment.text) for segment in plan.segments)
        if length > self.max_chars:
            raise ClientError(f"{length} characters to speak at once (limit {self.max_chars})")
        if any(not 0 <= segment.pause_ms <= MAX_PAUSE_MS for segment in plan.segments):
            raise ClientError(f"pauses must last 0 to {MAX_PAUSE_MS} ms")
        offset = 0
        base = 0
        for segment in plan.segments:
            async with contextlib.aclosing(self._segment(segment, base, offset)) as chunks:
                async for chunk in chunks:
                    offset = chunk.end_offset
                    yield chunk
            base += len(segment.text)

    async def _segment(
        self, segment: SpeechSegment, base: int, offset: int
    ) -> AsyncGenerator[SpeechChunk, None]:
        style = segment.style if segment.style is not None else self.style
        how = rendering(segment.prosody, style, self.defaults, self.presets)
        pause = segment.pause_ms * self.sample_rate // 1000
        chunker = ClauseChunker()
        clauses = [*chunker.feed(segment.text), *chunker.flush()]
        marks = segment.marks
        if not clauses:
            if pause or marks:
                silence = bytes(2 * pause)
                yield SpeechChunk(self.sample_rate, silence, offset, base, base, (), marks)
            return
        for i, clause in enumerate(clauses):
            spans = tuple(
                PhonemeSpan(span.start - clause.start, span.end - clause.start, span.phonemes)
                for span in segment.phonemes
                if clause.start <= span.start and span.end <= clause.end
            )
            last = i == len(clauses) - 1
            # espeak-ng runs in a worker thread of the caller's, not on the model's thread
            tokenized = await anyio.to_thread.run_sync(
                self._phonemizer.tokenize, clause.text, spans
            )
            request = _Clause(clause.text, tokenized, how, style, pause if last else 0)
            spoken = await self._executor.run(request)
            start = base + clause.start
            words = tuple(
                WordTiming(start + a, start + b, offset + s0, offset + s1)
                for a, b, s0, s1 in spoken.words
            )
            chunk = SpeechChunk(
                self.sample_rate, spoken.pcm, offset, start, base + clause.end, words, marks
            )
            marks = ()
            offset = chunk.end_offset
            yield chunk

    # -- the worker thread -----------------------------------------------------------------

    def _load(self) -> None:
        from voices.styletts2.checkpoint import load_model

        torch = self._torch
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        model = load_model(self.checkpoint, self.config, self.device)
        with torch.inference_mode():
            for emotion, source in self._references.items():
                audio = _reference_audio(source, self.sample_rate)
                tensor = torch.from_numpy(audio).to(self.device)
                try:
                    self._styles[emotion] = model.reference_style(tensor)
                except ModelError as error:
                    raise ModelError(f"the {emotion} reference: {error}") from error
        self._model = model

    def reference_style(self, style: Style | None) -> torch.Tensor | None:
        """The reference style vector for ``style`` (``None`` without reference audio)."""
        neutral = self._styles.get("neutral")
        if style is None or style.emotion not in self._styles:
            return neutral
        target = self._styles[style.emotion]
        if neutral is None:
            return target
        return neutral + style.intensity * (target - neutral)

    def _speak(self, clause: _Clause) -> _Spoken:
        model = self._model
        assert model is not None
        torch = self._torch
        tokenized = clause.tokenized
        if not tokenized.units:
            raise ModelError("a clause with nothing to say")
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self._seed ^ zlib.crc32(clause.text.encode()))
        tokens = torch.tensor([tokenized.tokens], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            result = model.synthesize(
                tokens, clause.rendering.knobs, generator, self.reference_style(clause.style)
            )
        audio: np.ndarray[Any, Any] = result.audio.astype(np.float64)
        if clause.rendering.whisper > 0:
            whispered = dsp.whisper(audio, self.sample_rate)
            audio = (1 - clause.rendering.whisper) * audio + clause.rendering.whisper * whispered
        audio = dsp.apply_gain(audio, clause.rendering.volume, self.sample_rate, ceiling=1.0)
        pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2").tobytes()
        pcm += bytes(2 * clause.pause_samples)
        hop = self.config.frame_samples
        bounds = np.concatenate([[0], np.cumsum(result.durations)]) * hop
        words = [
            (u.text_start, u.text_end, int(bounds[u.token_start]), int(bounds[u.token_end]))
            for u in tokenized.units
        ]
        a, b, s0, _ = words[-1]
        words[-1] = (a, b, s0, len(pcm) // 2)
        return _Spoken(pcm, tuple(words))


def _reference_audio(source: Reference, rate: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Mono float32 samples at ``rate`` from a WAV file (PCM16) or an array (at ``rate``)."""
    if isinstance(source, np.ndarray):
        return np.asarray(source, dtype=np.float32).reshape(-1)
    try:
        with wave.open(str(source), "rb") as reader:
            if reader.getsampwidth() != 2:
                raise ModelError(f"the reference {source} is not 16-bit PCM")
            channels, source_rate = reader.getnchannels(), reader.getframerate()
            raw = reader.readframes(reader.getnframes())
    except (OSError, wave.Error, EOFError) as error:
        raise ModelError(f"cannot read the reference audio {source}: {error}") from error
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).mean(axis=1) / 32768
    if source_rate != rate:
        import soxr

        samples = soxr.resample(samples, source_rate, rate)
    return np.asarray(samples, dtype=np.float32)
