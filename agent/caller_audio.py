"""Audio for a simulated caller (:mod:`agent.caller`) to send: speech, silence, noise, WAV files.

The benchmarks' callers and the tests make what they say with these: sentences spoken by
espeak-ng (the Debian package, run as a subprocess), the public-domain read speech that the
``moonshine-voice`` wheel ships, silence and white noise, and WAV files read and written (read
through :func:`pipeline.media.decode_audio`, so anything FFmpeg reads will do).

Everything is mono int16 numpy arrays with their sample rate. espeak-ng output is cached per
process (it is deterministic).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import subprocess
import wave
from pathlib import Path

import numpy as np

from pipeline.errors import InvalidAudio
from pipeline.events import Pcm
from pipeline.media import audio_rate, decode_audio

__all__ = ["espeak", "noise", "read_speech", "read_wav", "resample", "silence", "write_wav"]

MAX_SECONDS = 3600.0  # the longest file read_wav takes (decode_audio's guard against a bomb)


def read_wav(source: bytes | Path, rate: int | None = None) -> tuple[Pcm, int]:
    """A WAV file (or any audio FFmpeg reads) as mono PCM16 at ``rate`` (default: its own rate).

    Returns the samples and their rate. Any sample width and channel count: channels are
    averaged, and a width other than 16 bits keeps its top 16 bits. Raises
    :class:`~pipeline.errors.InvalidAudio` for a file that cannot be read or decoded, naming it.
    """
    name = str(source) if isinstance(source, Path) else "the audio"
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
    except OSError as error:
        raise InvalidAudio(f"cannot read {name}: {error.strerror or error}") from None
    try:
        rate = audio_rate(data) if rate is None else rate
        return decode_audio(data, rate, max_seconds=MAX_SECONDS), rate
    except InvalidAudio as error:
        raise InvalidAudio(f"{name} is not a PCM WAV file ({error})") from None


def write_wav(samples: Pcm, rate: int, channels: int = 1) -> bytes:
    """Encode int16 samples (interleaved if ``channels`` > 1) as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


@functools.cache
def espeak(text: str, rate: int = 16000, voice: str = "en-us", wpm: int = 160) -> Pcm:
    """``text`` spoken by espeak-ng (Debian package), resampled to ``rate`` with soxr."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    samples, native = read_wav(wav)
    return resample(samples, native, rate)


def resample(samples: Pcm, rate_in: int, rate_out: int) -> Pcm:
    """A whole clip at ``rate_out`` (soxr, in one piece; a stream: :mod:`pipeline.resample`)."""
    if rate_in == rate_out:
        return samples
    import soxr

    out = soxr.resample(samples.astype(np.float32) / 32768.0, rate_in, rate_out)
    clipped: Pcm = np.clip(out * 32768.0, -32768, 32767).astype(np.int16)
    return clipped


def read_speech(name: str = "beckett") -> tuple[Pcm, int]:
    """Public-domain read speech shipped in the ``moonshine-voice`` wheel (``beckett``: 16 kHz)."""
    # find_spec locates the package without importing it (its __init__ pulls network helpers).
    spec = importlib.util.find_spec("moonshine_voice")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the moonshine-voice wheel is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return read_wav(folder / "assets" / f"{name}.wav")


def silence(seconds: float, rate: int = 16000) -> Pcm:
    return np.zeros(round(seconds * rate), dtype=np.int16)


def noise(seconds: float, rate: int = 16000, level: float = 0.05, seed: int = 0) -> Pcm:
    """White noise at ``level`` of full scale (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, level, round(seconds * rate)) * 32767
    return np.clip(data, -32768, 32767).astype(np.int16)
