"""Resampling TTS output to the transport's rate with soxr, chunk by chunk.

:class:`StreamResampler` (:mod:`pipeline.resample`, here too) keeps the filter state between
chunks. :class:`ChunkResampler` does the same for :class:`~voices.engine.SpeechChunk` sequences and
carries the alignment along: word timings are converted to the new rate (exact in time), then
clamped to the chunk's new sample range, so the words still tile each chunk; a boundary between
chunks (and the marks it carries) moves by at most the lag. Its :meth:`~ChunkResampler.flush`
returns the tail as a chunk with no words.
"""

from __future__ import annotations

from pipeline.errors import InvalidAudio
from pipeline.resample import StreamResampler
from voices.engine import BYTES_PER_SAMPLE, SpeechChunk, WordTiming

__all__ = ["ChunkResampler", "StreamResampler"]


class ChunkResampler:
    """:class:`~voices.engine.SpeechChunk` objects of one utterance, converted to ``out_rate``."""

    def __init__(self, out_rate: int, *, quality: str = "HQ") -> None:
        self.out_rate = out_rate
        self._quality = quality
        self._resampler: StreamResampler | None = None
        self._position = 0  # output samples so far
        self._text_end = 0

    def process(self, chunk: SpeechChunk) -> SpeechChunk:
        if self._resampler is None:
            self._resampler = StreamResampler(
                chunk.sample_rate, self.out_rate, quality=self._quality
            )
        elif chunk.sample_rate != self._resampler.in_rate:
            raise InvalidAudio(
                f"chunk at {chunk.sample_rate} Hz in a stream at {self._resampler.in_rate} Hz"
            )
        pcm = self._resampler.process(chunk.pcm)
        start = self._position
        end = start + len(pcm) // BYTES_PER_SAMPLE
        self._position = end
        self._text_end = chunk.text_end
        last = len(chunk.words) - 1
        words = tuple(
            WordTiming(
                w.text_start,
                w.text_end,
                start if n == 0 else _clamp(self._convert(w.sample_start), start, end),
                end if n == last else _clamp(self._convert(w.sample_end), start, end),
            )
            for n, w in enumerate(chunk.words)
        )
        return SpeechChunk(
            self.out_rate, pcm, start, chunk.text_start, chunk.text_end, words, chunk.marks
        )

    def flush(self) -> SpeechChunk | None:
        """The last samples of the utterance, as a chunk with no words (``None`` if none)."""
        if self._resampler is None:
            return None
        pcm = self._resampler.flush()
        start = self._position
        self._position += len(pcm) // BYTES_PER_SAMPLE
        if not pcm:
            return None
        return SpeechChunk(self.out_rate, pcm, start, self._text_end, self._text_end)

    def _convert(self, position: int) -> int:
        assert self._resampler is not None
        return round(position * self.out_rate / self._resampler.in_rate)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))
