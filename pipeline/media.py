"""Audio files in and out, through PyAV (FFmpeg): decode an upload, encode a reply.

Decoding accepts whatever FFmpeg reads (wav, flac, mp3, ogg/opus, webm, ...) and returns mono
PCM16 at the rate asked for. Encoding streams: feed PCM16 chunks, get file bytes as soon as
the container allows (wav, pcm, mp3, opus in ogg, flac).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import ClassVar, Literal

import av
import av.error
import numpy as np

from pipeline.errors import InvalidAudio
from pipeline.events import PIPELINE_RATE, Pcm

OutputFormat = Literal["wav", "pcm", "mp3", "opus", "flac"]
CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "pcm": "audio/L16",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "flac": "audio/flac",
}


def decode_audio(data: bytes, rate: int = PIPELINE_RATE, *, max_seconds: float = 600.0) -> Pcm:
    """Decode a whole audio file to mono PCM16 at ``rate``.

    Raises :class:`InvalidAudio` for anything FFmpeg cannot read, a file with no audio stream,
    or more than ``max_seconds`` of audio.
    """
    if not data:
        raise InvalidAudio("the file is empty")
    max_samples = int(max_seconds * rate)
    chunks: list[Pcm] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InvalidAudio("the file has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1).astype(np.int16)
                    total += len(chunk)
                    if total > max_samples:
                        raise InvalidAudio(f"the audio is longer than {max_seconds:g} s")
                    chunks.append(chunk)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16))
    except InvalidAudio:
        raise
    except (av.error.FFmpegError, ValueError, IndexError) as error:
        raise InvalidAudio(f"cannot decode the audio: {error}") from error
    if not chunks:
        raise InvalidAudio("the file holds no audio samples")
    return np.concatenate(chunks)


def audio_rate(data: bytes) -> int:
    """The sample rate of a file's first audio stream (to :func:`decode_audio` it at that rate).

    Raises :class:`InvalidAudio` as :func:`decode_audio` does for a file it cannot open.
    """
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InvalidAudio("the file has no audio stream")
            rate: int = container.streams.audio[0].sample_rate
    except InvalidAudio:
        raise
    except (av.error.FFmpegError, ValueError, IndexError) as error:
        raise InvalidAudio(f"cannot decode the audio: {error}") from error
    return rate


def wav_header(rate: int, data_bytes: int = 0xFFFFFFFF - 36) -> bytes:
    """A PCM16 mono WAV header; the default length marks a stream of unknown length."""
    return (
        b"RIFF"
        + struct.pack("<I", min(data_bytes + 36, 0xFFFFFFFF))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class StreamEncoder:
    """Encode PCM16 mono chunks into a file format, yielding bytes as they are ready."""

    _CODECS: ClassVar[dict[str, tuple[str, str]]] = {
        "mp3": ("mp3", "libmp3lame"),
        "opus": ("ogg", "libopus"),
        "flac": ("flac", "flac"),
    }

    def __init__(self, fmt: OutputFormat, rate: int) -> None:
        self.fmt = fmt
        self.rate = rate
        self._started = False
        self._buffer = io.BytesIO()
        self._pts = 0
        self._container: av.container.OutputContainer | None = None
        if fmt in self._CODECS:
            container_format, codec = self._CODECS[fmt]
            self._out_rate = 48000 if fmt == "opus" else rate
            self._container = av.open(self._buffer, mode="w", format=container_format)
            stream = self._container.add_stream(codec, rate=self._out_rate)
            assert isinstance(stream, av.AudioStream)
            stream.layout = "mono"
            self._stream = stream
            self._resampler = av.AudioResampler(
                format=self._stream.format.name if self._stream.format else "s16",
                layout="mono",
                rate=self._out_rate,
            )

    def encode(self, pcm: bytes) -> bytes:
        if self.fmt == "pcm":
            return pcm
        if self.fmt == "wav":
            head = b"" if self._started else wav_header(self.rate)
            self._started = True
            return head + pcm
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.rate
        return self._mux(frame)

    def close(self) -> bytes:
        if self._container is None:
            return b"" if self._started or self.fmt == "pcm" else wav_header(self.rate, 0)
        tail = self._mux(None)
        self._container.close()
        tail += self._take()
        return tail

    def _mux(self, frame: av.AudioFrame | None) -> bytes:
        assert self._container is not None
        for out in self._resampler.resample(frame):
            out.pts = self._pts
            self._pts += out.samples
            for packet in self._stream.encode(out):
                self._container.mux(packet)
        if frame is None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        return self._take()

    def _take(self) -> bytes:
        data = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data


def encode_audio(chunks: Iterator[bytes], fmt: OutputFormat, rate: int) -> Iterator[bytes]:
    """Encode a stream of PCM16 chunks; see :class:`StreamEncoder`."""
    encoder = StreamEncoder(fmt, rate)
    for chunk in chunks:
        if data := encoder.encode(chunk):
            yield data
    if tail := encoder.close():
        yield tail
