"""A whole recording transcribed: windows through the shared executor, then segments and words.

:func:`transcribe_file` cuts the audio at its pauses (:func:`~pipeline.asr.windows.split_windows`)
and decodes the windows one after another on the executor every session shares, so a long file
never holds more than one request in its queue and live calls keep their turn. Each window is
decoded with the text of the windows before it as Whisper's previous-text prompt (as
faster-whisper does within a file), after the caller's own prompt. When no language is given,
the first window with speech decides it for the whole file, as in Whisper. With
``task="translate"`` every window is decoded into English (Whisper's translate task) and the
transcript's ``language`` is the language detected (or given) for the speech, not English.

Word times come back in seconds from the start of the file (each window's words shifted by the
window's start). Words are grouped into :class:`Segment` objects the size of a subtitle
(:func:`segment_words`). A window the decoder's guards reject adds no text; its reason is kept
in :attr:`FileTranscript.dropped`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

from pipeline.asr.decoder import DecodeOptions, DecodeRequest, Floats
from pipeline.asr.events import TranscriptWord
from pipeline.asr.stage import AsrRunner
from pipeline.asr.windows import split_windows
from pipeline.events import PIPELINE_RATE

#: languages written without spaces between words
UNSPACED = frozenset({"zh", "yue", "ja", "th", "lo", "km", "my", "bo"})
_SENTENCE_END = tuple(".!?。！？…")  # noqa: RUF001 - full-width forms on purpose
_CLAUSE_END = tuple(",;:，、；：")  # noqa: RUF001


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    #: seconds from the start of the file
    start: float
    end: float
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    #: the first sample of the window it was decoded from
    window_start: int
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Dropped:
    """A window that gave no text, and the guard's reason (see :mod:`pipeline.asr.guards`)."""

    start: float
    end: float
    reason: str


@dataclass(frozen=True, slots=True)
class FileTranscript:
    text: str
    #: the language spoken (of the source, when translated)
    language: str
    #: seconds of audio
    duration: float
    segments: tuple[Segment, ...]
    dropped: tuple[Dropped, ...] = ()
    #: the text is Whisper's English translation of the speech (``task="translate"``)
    translated: bool = False

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(word for segment in self.segments for word in segment.words)


async def transcribe_file(
    runner: AsrRunner,
    audio: Floats | npt.NDArray[np.int16],
    options: DecodeOptions,
    *,
    max_window: float | None = None,
) -> FileTranscript:
    """Transcribe 16 kHz mono ``audio`` of any length (PCM16, or float32 in [-1, 1], converted
    a window at a time); see the module docstring.

    Raises what the executor raises (:class:`~pipeline.errors.Overloaded` when its queue is
    full, :class:`~pipeline.errors.ModelError`).
    """
    longest = max_window if max_window is not None else options.max_audio_seconds - 0.25
    windows = split_windows(audio, max_seconds=longest, min_seconds=min(12.0, longest))
    history: list[str] = []
    segments: list[Segment] = []
    dropped: list[Dropped] = []
    language = options.language
    for start, end in windows:
        if language != options.language:
            options = msgspec.structs.replace(options, language=language)
        context = " ".join(history) if options.condition_on_previous_text else ""
        window = _floats(audio[start:end])
        decoded = await runner.run(
            DecodeRequest(audio=window, final=True, options=options, context=context)
        )
        if decoded.dropped is not None:
            dropped.append(Dropped(start / PIPELINE_RATE, end / PIPELINE_RATE, decoded.dropped))
            continue
        language = language or decoded.language
        words = [
            Word(w.word, (start + a) / PIPELINE_RATE, (start + b) / PIPELINE_RATE, w.probability)
            for w, (a, b) in zip(decoded.words, snap_to_sound(decoded.words, window), strict=True)
        ]
        joiner = _joiner(decoded.language, options)
        for group in segment_words(words) if words else []:
            text = joiner.join(w.word for w in group)
            segments.append(
                Segment(
                    len(segments), group[0].start, group[-1].end, text, start,
                    decoded.avg_logprob, decoded.no_speech_prob, tuple(group),
                )
            )  # fmt: skip
        if not words:  # no word timings: the window is one segment
            segments.append(
                Segment(
                    len(segments), start / PIPELINE_RATE, end / PIPELINE_RATE, decoded.text, start,
                    decoded.avg_logprob, decoded.no_speech_prob,
                )
            )  # fmt: skip
        history = (history + decoded.text.split())[-options.context_words :]
    return FileTranscript(
        text=_joiner(language, options).join(s.text for s in segments),
        language=language or "",
        duration=len(audio) / PIPELINE_RATE,
        segments=tuple(segments),
        dropped=tuple(dropped),
        translated=options.task == "translate",
    )


def _joiner(language: str | None, options: DecodeOptions) -> str:
    """What goes between the words of text in ``language`` (a translation is English)."""
    return "" if language in UNSPACED and options.task != "translate" else " "


def _floats(samples: Floats | npt.NDArray[np.int16]) -> Floats:
    if samples.dtype == np.float32:
        return samples.astype(np.float32, copy=False)
    return samples.astype(np.float32) / np.float32(32768.0)


def snap_to_sound(
    words: Sequence[TranscriptWord],
    audio: Floats,
    *,
    range_db: float = 35.0,
    floor_dbfs: float = -55.0,
    min_gap: float = 0.15,
    margin: float = 0.05,
) -> list[tuple[int, int]]:
    """Word spans (samples) with the silence at their edges taken out.

    Whisper's alignment gives the pause before a word to the word itself (seen: a word
    "starting" 4.5 s early, after a long pause). Where a word's span begins or ends with at
    least ``min_gap`` seconds of quiet (20 ms frames more than ``range_db`` below the loudest,
    or below ``floor_dbfs``), that edge moves to ``margin`` seconds from the sound. A span with
    no sound in it is left alone.
    """
    frame = PIPELINE_RATE // 50
    count = len(audio) // frame
    if count == 0:
        return [(w.start, w.end) for w in words]
    rms = np.sqrt(np.mean(audio[: count * frame].astype(np.float64).reshape(count, frame) ** 2, 1))
    threshold = max(float(rms.max()) * 10 ** (-range_db / 20), 10 ** (floor_dbfs / 20))
    loud = rms >= threshold
    gap, pad = round(min_gap * PIPELINE_RATE), round(margin * PIPELINE_RATE)
    spans = []
    for word in words:
        first, last = word.start // frame, min(-(-word.end // frame), count)
        active = np.flatnonzero(loud[first:last]) if first < last else np.empty(0, np.int64)
        start, end = word.start, word.end
        if len(active):
            onset = (first + int(active[0])) * frame
            offset = (first + int(active[-1]) + 1) * frame
            if onset - start >= gap:
                start = onset - pad
            if end - offset >= gap:
                end = offset + pad
        spans.append((start, max(start, end)))
    return spans


def segment_words(
    words: Sequence[Word],
    *,
    clause_seconds: float = 4.0,
    clause_chars: int = 42,
    max_seconds: float = 10.0,
    max_chars: int = 120,
) -> list[list[Word]]:
    """Words grouped into subtitle-sized segments, in order, every word in exactly one.

    A segment ends after a word that ends a sentence; after a clause end (``,``, ``;``, ...)
    once it lasts ``clause_seconds`` or holds ``clause_chars`` characters; and after any word
    once it lasts ``max_seconds`` or holds ``max_chars`` characters.
    """
    groups: list[list[Word]] = []
    current: list[Word] = []
    chars = 0
    for word in words:
        current.append(word)
        chars += len(word.word) + 1
        seconds = word.end - current[0].start
        text = word.word.rstrip("\"')]}”’")  # noqa: RUF001
        if (
            text.endswith(_SENTENCE_END)
            or (text.endswith(_CLAUSE_END) and (seconds >= clause_seconds or chars >= clause_chars))
            or seconds >= max_seconds
            or chars >= max_chars
        ):
            groups.append(current)
            current, chars = [], 0
    if current:
        groups.append(current)
    return groups
