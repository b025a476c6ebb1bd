"""Audio that tests make for themselves: espeak-ng speech, shipped read speech, noise, silence.

Everything returns mono int16 numpy arrays with their sample rate. espeak-ng output is cached
per process (it is deterministic).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import subprocess
import wave
from pathlib import Path

import numpy as np

from pipeline.events import Pcm


def read_wav(data: bytes | Path) -> tuple[Pcm, int]:
    """Decode a PCM16 WAV (mono or stereo: stereo is averaged) into (samples, rate)."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    with wave.open(io.BytesIO(raw)) as w:
        if w.getsampwidth() != 2:
            raise ValueError("only 16-bit WAV files are supported here")
        channels = w.getnchannels()
        rate = w.getframerate()
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels > 1:
        frames = frames.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return frames.astype(np.int16), rate


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
    if rate_in == rate_out:
        return samples
    import soxr

    out = soxr.resample(samples.astype(np.float32) / 32768.0, rate_in, rate_out)
    clipped: Pcm = np.clip(out * 32768.0, -32768, 32767).astype(np.int16)
    return clipped


def read_speech(name: str = "beckett") -> tuple[Pcm, int]:
    """Public-domain read speech shipped in the ``moonshine-voice`` wheel (16 kHz)."""
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
