"""Resampling PCM16 streams to the transport's rate with soxr, chunk by chunk.

:class:`StreamResampler` keeps the filter state between chunks, so a stream resampled in pieces
sounds (and measures) like one resampled whole: no clicks at chunk joins, and after
:meth:`~StreamResampler.flush` exactly ``round(n * out_rate / in_rate)`` samples for ``n`` in.
The price is a small lag: each call returns what the filter has settled so far (about 10 ms
behind the input at 22.05 -> 16 kHz, HQ), and ``flush`` returns the rest.

:class:`ChunkResampler` does the same for :class:`~voices.engine.SpeechChunk` sequences and
carries the alignment along: word timings are converted to the new rate (exact in time), then
clamped to the chunk's new sample range, so the words still tile each chunk; a boundary between
chunks (and the marks it carries) moves by at most the lag. Its :meth:`~ChunkResampler.flush`
returns the tail as a chunk with no words.
"""

from __future__ import annotations

import numpy as np
import soxr

from pipeline.errors import InvalidAudio
from voices.engine import BYTES_PER_SAMPLE, SpeechChunk, WordTiming


class StreamResampler:
    """Mono PCM16 little-endian bytes at ``in_rate`` to the same at ``out_rate``."""

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._quality = quality
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)

    def process(self, pcm: bytes) -> bytes:
        """Resample the next piece of the stream; returns the output that is ready."""
        if len(pcm) % BYTES_PER_SAMPLE:
            raise InvalidAudio(f"PCM16 needs an even number of bytes, got {len(pcm)}")
        if self._stream is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2")
        return _to_bytes(self._stream.resample_chunk(samples))

    def flush(self) -> bytes:
        """End the stream: the output still held by the filter. The resampler can start anew."""
        if self._stream is None:
            return b""
        tail = _to_bytes(self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True))
        self._stream.clear()
        return tail


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


def _to_bytes(samples: np.ndarray) -> bytes:
    return np.ascontiguousarray(samples, dtype="<i2").tobytes()
