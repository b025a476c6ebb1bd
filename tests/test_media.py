"""Audio files in and out through PyAV: every format round-trips; bad files get clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InvalidAudio
from pipeline.media import decode_audio, encode_audio, wav_header
from tests.audio import espeak, write_wav


def tone(seconds: float = 1.0, rate: int = 16000) -> np.ndarray[tuple[int], np.dtype[np.int16]]:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "flac"])
def test_each_format_round_trips_through_the_streaming_encoder(fmt: str) -> None:
    samples = tone()
    pcm = samples.tobytes()
    chunks = [pcm[i : i + 3200] for i in range(0, len(pcm), 3200)]
    data = b"".join(encode_audio(iter(chunks), fmt, 16000))  # type: ignore[arg-type]
    decoded = decode_audio(data, 16000)
    assert abs(len(decoded) - len(samples)) < 0.1 * 16000  # codecs pad a little
    # the tone survives: its energy sits at 440 Hz
    spectrum = np.abs(np.fft.rfft(decoded[:16000].astype(np.float64), n=16000))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2


def test_stereo_44k_wav_decodes_to_16k_mono() -> None:
    speech = espeak("testing one two three", rate=44100)
    stereo = np.stack([speech, speech], axis=1).reshape(-1)
    decoded = decode_audio(write_wav(stereo, 44100, channels=2), 16000)
    assert abs(len(decoded) - len(speech) * 16000 / 44100) < 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"not audio at all" * 64, "unsupported audio: a format this server does not read"),
        (wav_header(16000, 0), "no audio samples"),
    ],
)
def test_bad_files_get_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(InvalidAudio, match=message):
        decode_audio(data)


def test_a_truncated_file_decodes_what_is_there_or_fails_clearly() -> None:
    data = b"".join(encode_audio(iter([tone(2.0).tobytes()]), "mp3", 16000))
    try:
        decoded = decode_audio(data[: len(data) // 2])
    except InvalidAudio:
        return
    assert 0 < len(decoded) < 2 * 16000


def test_too_long_audio_is_refused() -> None:
    with pytest.raises(InvalidAudio, match=r"longer than 0\.5 s"):
        decode_audio(write_wav(tone(1.0), 16000), max_seconds=0.5)


def test_pcm_passes_through_untouched() -> None:
    pcm = tone(0.1).tobytes()
    assert b"".join(encode_audio(iter([pcm]), "pcm", 16000)) == pcm
