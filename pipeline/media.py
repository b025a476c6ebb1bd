"""Audio files in and out, through PyAV (FFmpeg): decode an upload, encode a reply.

Decoding reads only what OpenAI's audio endpoints take (:data:`UPLOAD_FORMATS`: wav with PCM
or G.711, mp3, flac, ogg with opus/vorbis/flac, webm with opus/vorbis, m4a/mp4 with aac, alac
or mp3) and returns mono PCM16 at the rate asked for. The container is found from the file's
first bytes (never its name) and FFmpeg is made to open it with that demuxer alone, so no
other demuxer ever reads an upload (an HLS playlist's or a concat list's would open the files
and URLs it names); the codec is checked on the stream FFmpeg finds. Anything else is an
:class:`InvalidAudio` naming the format. Encoding streams: feed PCM16 chunks, get file bytes as
soon as the container allows (wav, pcm, mp3, opus in ogg, flac).
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


_PCM = frozenset({"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le", "pcm_u8"})
_MP3 = frozenset({"mp3float", "mp3"})  # FFmpeg's two mp3 decoders
#: FFmpeg's demuxer for each container an upload may be in, and the decoders of the codecs it
#: may hold (what OpenAI's transcriptions take: flac, m4a, mp3, mp4, mpeg, ogg, wav, webm)
UPLOAD_FORMATS: dict[str, frozenset[str]] = {
    "wav": _PCM | {"pcm_mulaw", "pcm_alaw"},
    "mp3": _MP3,
    "flac": frozenset({"flac"}),
    "ogg": frozenset({"opus", "vorbis", "flac"}),
    "matroska": frozenset({"opus", "vorbis"}),  # webm
    "mp4": frozenset({"aac", "alac"}) | _MP3,  # m4a, mp4
}
#: the file types read, as OpenAI lists them (``opus``: in ogg; ``mpeg``: mp3)
FORMATS_READ = "flac, m4a, mp3, mp4, mpeg, ogg, opus, wav, webm"
#: first bytes of containers refused, only to name them in the error
_REFUSED_MAGIC = {
    b"FORM": "aiff", b"#!AMR": "amr", b".snd": "au", b"caff": "caf", b"\x0bw": "ac3",
    b"#EXTM3U": "m3u/hls", b"ffconcat": "concat", b"MThd": "midi", b"wvpk": "wavpack",
    b"MAC ": "ape", b"\xff\xf1": "aac (adts)", b"\xff\xf9": "aac (adts)", b"RIFF": "riff",
}  # fmt: skip


def container_of(data: bytes) -> str | None:
    """The container of a file (a key of :data:`UPLOAD_FORMATS`), from its first bytes;
    ``None`` for any other."""
    head = data[:12]
    if head.startswith((b"RIFF", b"RF64")) and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[4:8] == b"ftyp":
        return "mp4"
    # an ID3 tag, or an MPEG audio frame's sync and layer III (not ADTS AAC's layer 0)
    if head.startswith(b"ID3") or (
        len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 == 0x02
    ):
        return "mp3"
    return None


def _refused(data: bytes) -> InvalidAudio:
    name = next((n for magic, n in _REFUSED_MAGIC.items() if data.startswith(magic)), None)
    found = f"the {name} format" if name else "a format this server does not read"
    return InvalidAudio(f"unsupported audio: {found} (formats read: {FORMATS_READ})")


#: the highest sample rate an upload may have (a WAV header may claim any 32-bit rate)
MAX_UPLOAD_RATE = 384_000


def decode_audio(data: bytes, rate: int = PIPELINE_RATE, *, max_seconds: float = 600.0) -> Pcm:
    """Decode a whole audio file to mono PCM16 at ``rate``.

    Raises :class:`InvalidAudio` for a container or codec not in :data:`UPLOAD_FORMATS`,
    anything FFmpeg cannot read, a file with no audio stream, or more than ``max_seconds`` of
    audio (as the file declares it, before decoding; and as decoded).
    """
    if not data:
        raise InvalidAudio("the file is empty")
    max_samples = int(max_seconds * rate)
    chunks: list[Pcm] = []
    total = 0
    try:
        with _opened(data) as container:
            stream = container.streams.audio[0]
            declared = container.duration  # microseconds, when the file says
            if declared is not None and declared > max_seconds * 1_000_000:
                raise InvalidAudio(f"the audio is longer than {max_seconds:g} s")
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
        with _opened(data) as container:
            rate: int = container.streams.audio[0].sample_rate
    except InvalidAudio:
        raise
    except (av.error.FFmpegError, ValueError, IndexError) as error:
        raise InvalidAudio(f"cannot decode the audio: {error}") from error
    return rate


def _opened(data: bytes) -> av.container.InputContainer:
    """``data`` opened with the demuxer of its container, once its container and its first
    audio stream's codec are allowed (:data:`UPLOAD_FORMATS`); raises :class:`InvalidAudio`
    (or FFmpeg's errors, for a file it cannot read)."""
    container_format = container_of(data)
    if container_format is None:
        raise _refused(data)
    container = av.open(io.BytesIO(data), mode="r", format=container_format)
    try:
        if not container.streams.audio:
            raise InvalidAudio("the file has no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
        if codec not in UPLOAD_FORMATS[container_format]:
            shown = "webm" if container_format == "matroska" else container_format
            raise InvalidAudio(
                f"unsupported audio: {codec} in {shown} (formats read: {FORMATS_READ}; wav"
                " with PCM or G.711, ogg and webm with opus or vorbis, m4a with aac or alac)"
            )
        if not 0 < stream.sample_rate <= MAX_UPLOAD_RATE:  # a resampler from 16 MHz: GBs, seconds
            raise InvalidAudio(f"unsupported sample rate: {stream.sample_rate} Hz")  # (bench/fuzz)
    except BaseException:
        container.close()
        raise
    return container


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
