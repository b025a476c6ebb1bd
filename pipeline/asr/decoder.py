"""Decoding one short window of speech with Whisper, fast and guarded (synchronous).

**No 30 s window.** faster-whisper pads every decode to Whisper's 30 s window, so a 2 s
utterance costs as much as 30 s of audio. CTranslate2's encoder accepts any length up to 3000
frames, so :class:`WhisperDecoder` computes log-mel features of the utterance plus
``tail_silence`` seconds of silence only, and calls the CTranslate2 model directly
(``encode``, then ``generate`` on the encoder output, then ``align`` for word timings).

**But not too short either.** Measured here with the embedded base model: windows under about
6 s make Whisper loop ("Thank you. Thank you. Thank you. ...", "Hello Hello Hello ..."),
while padding short utterances with silence to ``min_window`` (10 s by default) gave a lower
word error rate on 160 espeak-ng sentences than the other lengths tried (0 to 12 s), and than
the full 30 s window (which also invented "and leave a link in the description."), at about a
sixth of the 30 s cost. The repetition guard stays on anyway (:mod:`pipeline.asr.guards`).

Everything else is Whisper's own: the prompt (``<|startofprev|>`` hotwords, initial prompt and
the request's context, then the start-of-transcript sequence, ``<|notimestamps|>``), beam search
for finals and
greedy search for partials, language detection from the same encoder output when no language
is configured, word timestamps from the alignment heads (faster-whisper's
``find_alignment``, on the short window).

Several requests (several calls' windows) decode as one batch: :mod:`pipeline.asr.decode_batch`,
the one path (:meth:`WhisperDecoder.decode` is a batch of one).

Every request returns a :class:`Decoded`; ``dropped`` names the guard that rejected it (see
:mod:`pipeline.asr.guards`), so callers can say why nothing was transcribed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from pipeline.asr.events import TranscriptWord
from pipeline.asr.model import AsrModelConfig, load_whisper
from pipeline.errors import InvalidAudio
from pipeline.events import PIPELINE_RATE

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

#: Whisper's window: the encoder takes at most this many seconds
WINDOW_SECONDS = 30.0
#: Whisper's decoder context, prompt included
MAX_TOKENS = 448

Floats = npt.NDArray[np.float32]


class DecodeOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to decode, and when to refuse to; seconds are seconds of 16 kHz audio."""

    #: language code (``"en"``), or ``None`` to detect it for every utterance
    language: str | None = "en"
    task: Literal["transcribe", "translate"] = "transcribe"
    #: beam width for finals; partials use ``partial_beam_size``
    beam_size: int = 5
    partial_beam_size: int = 1
    #: text that conditions the decoder (previous context, spelling hints)
    initial_prompt: str | None = None
    #: names and terms to bias recognition towards (placed before the prompt)
    hotwords: str | None = None
    #: the stage passes the session's last finals as context (Whisper's own habit: isolated
    #: short phrases are misheard far more often without it)
    condition_on_previous_text: bool = True
    #: at most this many words of earlier finals go into the context
    context_words: int = 24
    #: word timings and probabilities on finals (costs one alignment pass)
    word_timestamps: bool = True
    #: shorter windows are padded with silence to this length (see the module docstring)
    min_window: float = 10.0
    #: silence added after the audio before decoding
    tail_silence: float = 0.75
    #: token budget: this many tokens per second of audio, plus 8
    max_tokens_per_second: float = 12.0
    # -- guards (pipeline.asr.guards) --------------------------------------------------------
    silence_dbfs: float = -55.0
    min_active: float = 0.2
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -0.5
    #: ``None`` turns the low-confidence guard off
    min_avg_logprob: float | None = -1.0

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.partial_beam_size < 1:
            raise ValueError("beam sizes must be at least 1")
        if not 0.0 <= self.tail_silence < 5.0:
            raise ValueError("tail_silence must be between 0 and 5 seconds")
        if not 0.0 <= self.min_window <= WINDOW_SECONDS:
            raise ValueError(f"min_window must be between 0 and {WINDOW_SECONDS} seconds")
        if self.max_tokens_per_second <= 0:
            raise ValueError("max_tokens_per_second must be positive")
        if self.language is not None and self.language not in whisper_languages():
            raise ValueError(f"Whisper does not know the language {self.language!r}")

    @property
    def max_audio_seconds(self) -> float:
        """The longest audio one request may carry (the window less the tail)."""
        return WINDOW_SECONDS - self.tail_silence


@dataclass(frozen=True, slots=True, eq=False)  # holds an array: compare by identity
class DecodeRequest:
    """One window to decode: 16 kHz mono float32 samples in [-1, 1].

    ``context`` is text said before this audio (earlier finals): it follows the configured
    ``initial_prompt`` in the decoder's prompt.
    """

    audio: Floats
    final: bool
    options: DecodeOptions = field(default_factory=DecodeOptions)
    context: str = ""


@dataclass(frozen=True, slots=True)
class Decoded:
    """The outcome of one request. Word times are samples from the start of the audio."""

    text: str
    words: tuple[TranscriptWord, ...] = ()
    language: str = ""
    language_probability: float = 1.0
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    #: the guard that rejected the text (one of ``guards.REASONS``), or ``None``
    dropped: str | None = None
    notes: tuple[str, ...] = ()
    #: the English translation of ``text``, where the ASR stage asked for one (its
    #: ``translation`` options: a second decode of the same audio)
    translation: str = ""
    #: seconds spent: ``features``, ``encode``, ``generate``, ``align``, ``total``
    timings: dict[str, float] = field(default_factory=dict)


@functools.cache
def whisper_languages() -> frozenset[str]:
    """The language codes a multilingual Whisper model accepts."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def to_model_audio(samples: npt.NDArray[Any], rate: int, channels: int = 1) -> Floats:
    """PCM16 (or float) samples at any rate, interleaved if ``channels`` > 1, to what the
    decoder takes: 16 kHz mono float32 (averaged channels, resampled with soxr)."""
    if channels < 1 or rate <= 0:
        raise InvalidAudio("need at least one channel and a positive sample rate")
    if len(samples) % channels:
        raise InvalidAudio("interleaved audio must hold a whole number of frames")
    audio = samples.astype(np.float32)
    if np.issubdtype(samples.dtype, np.integer):
        audio /= 32768.0
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    if rate != PIPELINE_RATE:
        import soxr

        audio = np.asarray(soxr.resample(audio, rate, PIPELINE_RATE, quality="HQ"), np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32)


class WhisperDecoder:
    """A loaded Whisper model and the code that decodes short windows with it.

    Not thread-safe: use it from one thread (the executor's worker).
    """

    def __init__(self, model: WhisperModel) -> None:
        self.model = model
        self._tokenizers: dict[tuple[str, str], Any] = {}

    @classmethod
    def load(cls, config: AsrModelConfig | None = None) -> WhisperDecoder:
        return cls(load_whisper(config if config is not None else AsrModelConfig()))

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def decode(self, request: DecodeRequest) -> Decoded:
        """Decode one request (a batch of one: see :mod:`pipeline.asr.decode_batch`).

        Raises :class:`~pipeline.errors.InvalidAudio` for audio it cannot take.
        """
        (result,) = self.decode_batch([request])
        if isinstance(result, Exception):
            raise result
        return result

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Decoded | Exception]:
        """Decode ``requests`` together (:mod:`pipeline.asr.decode_batch`): one result per
        request, in order, each what :meth:`decode` gives for it alone, or the error that it
        alone raised."""
        from pipeline.asr.decode_batch import decode_batch

        return decode_batch(self, requests)

    def tokenizer(self, language: str, task: str) -> Any:
        """faster-whisper's tokenizer for ``language`` and ``task`` (made once, kept)."""
        key = (language, task)
        tokenizer = self._tokenizers.get(key)
        if tokenizer is None:
            from faster_whisper.tokenizer import Tokenizer

            tokenizer = Tokenizer(
                self.model.hf_tokenizer, self.multilingual, task=task, language=language
            )
            self._tokenizers[key] = tokenizer
        return tokenizer

    @staticmethod
    def prompt(tokenizer: Any, options: DecodeOptions, context: str) -> list[int]:
        """``<|startofprev|>`` hotwords, then the prompt and context (their newest tokens),
        then the start of transcript; the whole ``<|startofprev|>`` part is at most half the
        decoder's context, as in Whisper."""
        limit = MAX_TOKENS // 2 - 1
        hotwords: list[int] = []
        if options.hotwords and options.hotwords.strip():
            hotwords = tokenizer.encode(" " + options.hotwords.strip())[: limit // 2]
        previous: list[int] = []
        for text in (options.initial_prompt, context):
            if text and text.strip():
                previous += tokenizer.encode(" " + text.strip())
        previous = previous[-(limit - len(hotwords)) :]
        prompt = [tokenizer.sot_prev, *hotwords, *previous] if hotwords or previous else []
        return [*prompt, *tokenizer.sot_sequence, tokenizer.no_timestamps]
