"""Audio at the edge of a transport: formats, validation and conversion to and from 16 kHz.

Every transport hands the pipeline the same thing, a :class:`~pipeline.events.AudioFrame` of
the caller's side (generation ``0``): mono PCM16 little-endian at
:data:`~pipeline.events.PIPELINE_RATE` (re-exported here) with ``pts`` counted in samples from
the start of the call; and takes whatever the bot says (PCM16 at the synthesizer's rate) back
to the client's format. A transport does not know the session it feeds (its adapter creates
that), so the frames it makes have an empty ``session_id``: the adapter passes their ``pcm``
to the session, which frames it again under its own id.

- :class:`AudioFormat` is what a client declared: an encoding (``pcm16``, ``mulaw``, ``alaw``)
  and a sample rate; :meth:`AudioFormat.problem` says what is wrong with one, if anything.
- :class:`InboundAudio` decodes a client's payloads and resamples them to 16 kHz with a soxr
  stream resampler, so pieces convert like the whole (no clicks at frame joins). The filter
  holds some audio back, which delays everything downstream (the end of a turn included), so
  inbound audio uses soxr's medium quality: measured here, 26 ms from 8 kHz and 15 ms from
  24 or 48 kHz (high quality: 66 and 21 ms). It raises
  :class:`~pipeline.errors.InvalidAudio` for a payload it cannot take (odd byte count for
  PCM16, too large); protocols catch it and tell the peer.
- :class:`OutboundAudio` does the reverse for one stream of bot audio: resample from the
  source rate, encode, and count the samples produced so positions can be reported back
  (what the listener heard). Synthesis arrives in large chunks, so its filter's lag costs
  nothing until the end of a reply; it uses high quality.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from pipeline.errors import InvalidAudio
from pipeline.events import BYTES_PER_SAMPLE, PIPELINE_RATE, AudioFrame
from pipeline.resample import StreamResampler
from transports.g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16

__all__ = [
    "MAX_RATE",
    "MIN_RATE",
    "PIPELINE_RATE",
    "AudioFormat",
    "Encoding",
    "InboundAudio",
    "OutboundAudio",
    "samples_to_ms",
]

MIN_RATE = 8000
MAX_RATE = 48000

Encoding = Literal["pcm16", "mulaw", "alaw"]


class AudioFormat(msgspec.Struct, frozen=True):
    """An encoding and a sample rate, as a client declares them."""

    encoding: Encoding = "pcm16"
    sample_rate: int = PIPELINE_RATE

    @property
    def bytes_per_sample(self) -> int:
        return BYTES_PER_SAMPLE if self.encoding == "pcm16" else 1

    def problem(self) -> str | None:
        """Why Voxline cannot use this format, or ``None`` when it can."""
        if self.encoding == "pcm16":
            if not MIN_RATE <= self.sample_rate <= MAX_RATE:
                return f"pcm16 sample_rate must be {MIN_RATE}-{MAX_RATE} Hz"
            return None
        if self.sample_rate != 8000:
            return f"{self.encoding} is 8000 Hz only"
        return None

    def samples(self, payload_bytes: int) -> int:
        return payload_bytes // self.bytes_per_sample


def samples_to_ms(samples: int, sample_rate: int) -> int:
    """Whole milliseconds in ``samples`` (rounded down)."""
    return samples * 1000 // sample_rate


def _decode(encoding: Encoding, payload: bytes) -> bytes:
    if encoding == "mulaw":
        return ulaw_to_pcm16(payload)
    if encoding == "alaw":
        return alaw_to_pcm16(payload)
    return payload


def _encode(encoding: Encoding, pcm: bytes) -> bytes:
    if encoding == "mulaw":
        return pcm16_to_ulaw(pcm)
    if encoding == "alaw":
        return pcm16_to_alaw(pcm)
    return pcm


class InboundAudio:
    """One client's payloads to 16 kHz PCM16, with a running ``pts``.

    ``max_bytes`` bounds one payload. ``start`` is the ``pts`` of the first sample produced
    (carry :attr:`pts` over when the format changes mid-call, after :meth:`flush`).
    """

    def __init__(
        self,
        format: AudioFormat,
        *,
        max_bytes: int = 1 << 20,
        start: int = 0,
        quality: str = "MQ",
    ) -> None:
        problem = format.problem()
        if problem is not None:
            raise ValueError(problem)
        self.format = format
        self.max_bytes = max_bytes
        self.pts = start
        self._resampler = StreamResampler(format.sample_rate, PIPELINE_RATE, quality=quality)

    def convert(self, payload: bytes) -> AudioFrame | None:
        """The 16 kHz audio that ``payload`` completes (``None`` while the filter fills)."""
        if len(payload) > self.max_bytes:
            raise InvalidAudio(f"audio payload of {len(payload)} bytes (limit {self.max_bytes})")
        if self.format.encoding == "pcm16" and len(payload) % BYTES_PER_SAMPLE:
            raise InvalidAudio(f"pcm16 audio needs an even number of bytes, got {len(payload)}")
        return self._emit(self._resampler.process(_decode(self.format.encoding, payload)))

    def flush(self) -> AudioFrame | None:
        """End of this stream: what the resampler still holds."""
        return self._emit(self._resampler.flush())

    def _emit(self, pcm: bytes) -> AudioFrame | None:
        if not pcm:
            return None
        chunk = AudioFrame(session_id="", sample_rate=PIPELINE_RATE, pcm=pcm, pts=self.pts)
        self.pts = chunk.end_pts
        return chunk


class OutboundAudio:
    """One stream of bot audio (one generation) in the client's format.

    Feed PCM16 at any rate with :meth:`convert` (the rate may not change within a stream);
    :meth:`flush` at the end returns the resampler's tail. :attr:`samples` counts the samples
    produced so far at the client's rate, which is what a playback report refers to.
    """

    def __init__(self, format: AudioFormat, *, quality: str = "HQ") -> None:
        self.format = format
        self.samples = 0
        self.source_samples = 0
        self._quality = quality
        self._resampler: StreamResampler | None = None

    @property
    def source_rate(self) -> int | None:
        return None if self._resampler is None else self._resampler.in_rate

    def convert(self, pcm: bytes, sample_rate: int) -> bytes:
        """Encode ``pcm`` (PCM16 LE mono at ``sample_rate``): the bytes ready to send."""
        if self._resampler is None:
            self._resampler = StreamResampler(
                sample_rate, self.format.sample_rate, quality=self._quality
            )
        elif sample_rate != self._resampler.in_rate:
            raise ValueError(
                f"audio at {sample_rate} Hz in a stream at {self._resampler.in_rate} Hz"
            )
        self.source_samples += len(pcm) // BYTES_PER_SAMPLE
        return self._out(self._resampler.process(pcm))

    def flush(self) -> bytes:
        if self._resampler is None:
            return b""
        return self._out(self._resampler.flush())

    def to_source(self, samples: int) -> int:
        """A position at the client's rate as a position at the source rate."""
        rate = self.source_rate or self.format.sample_rate
        return round(samples * rate / self.format.sample_rate)

    def _out(self, pcm: bytes) -> bytes:
        self.samples += len(pcm) // BYTES_PER_SAMPLE
        return _encode(self.format.encoding, pcm)
