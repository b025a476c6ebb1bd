"""Audio at the transport's edge: formats, inbound conversion to 16 kHz, outbound encoding."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InvalidAudio
from pipeline.events import PIPELINE_RATE, AudioFrame
from transports.audio import AudioFormat, InboundAudio, OutboundAudio, samples_to_ms
from transports.g711 import pcm16_to_ulaw, ulaw_to_pcm16


def tone(seconds: float, rate: int, frequency: float = 440.0) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * frequency * t) * 12000).astype("<i2").tobytes()


def convert_in_pieces(fmt: AudioFormat, payload: bytes, cuts: list[int]) -> list[AudioFrame]:
    inbound = InboundAudio(fmt)
    step = fmt.bytes_per_sample
    bounds = [0, *sorted(step * (c // step) for c in cuts), len(payload)]
    chunks = [inbound.convert(payload[a:b]) for a, b in itertools.pairwise(bounds)]
    chunks.append(inbound.flush())
    return [c for c in chunks if c is not None]


@pytest.mark.parametrize(
    ("fmt", "problem"),
    [
        (AudioFormat("pcm16", 16000), None),
        (AudioFormat("pcm16", 8000), None),
        (AudioFormat("pcm16", 48000), None),
        (AudioFormat("pcm16", 7999), "8000-48000"),
        (AudioFormat("pcm16", 48001), "8000-48000"),
        (AudioFormat("mulaw", 8000), None),
        (AudioFormat("mulaw", 16000), "8000 Hz only"),
        (AudioFormat("alaw", 8000), None),
        (AudioFormat("alaw", 44100), "8000 Hz only"),
    ],
)
def test_which_formats_are_accepted(fmt: AudioFormat, problem: str | None) -> None:
    found = fmt.problem()
    assert found is None if problem is None else problem in (found or "")


def test_16_khz_pcm_passes_through_unchanged_with_running_pts() -> None:
    inbound = InboundAudio(AudioFormat("pcm16", 16000))
    first = inbound.convert(tone(0.02, 16000))
    second = inbound.convert(tone(0.01, 16000))
    assert first == AudioFrame(
        session_id="", sample_rate=PIPELINE_RATE, pcm=tone(0.02, 16000), pts=0
    )
    assert second is not None
    assert second.pts == 320
    assert second.end_pts == 480
    assert inbound.flush() is None


@pytest.mark.parametrize(
    ("fmt", "make"),
    [
        (AudioFormat("pcm16", 48000), lambda: tone(1.0, 48000)),
        (AudioFormat("pcm16", 24000), lambda: tone(1.0, 24000)),
        (AudioFormat("pcm16", 8000), lambda: tone(1.0, 8000)),
        (AudioFormat("mulaw", 8000), lambda: pcm16_to_ulaw(tone(1.0, 8000))),
    ],
)
def test_other_formats_become_one_second_at_16_khz(
    fmt: AudioFormat, make: Callable[[], bytes]
) -> None:
    chunks = convert_in_pieces(fmt, make(), [3000, 7000])
    assert sum(c.num_samples for c in chunks) == 16000
    for before, after in itertools.pairwise(chunks):
        assert after.pts == before.end_pts
    pcm = np.frombuffer(b"".join(c.pcm for c in chunks), "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # still a 440 Hz tone


@settings(deadline=None, max_examples=40)
@given(st.lists(st.integers(0, 16000), max_size=12))
def test_pieces_convert_like_the_whole(cuts: list[int]) -> None:
    fmt = AudioFormat("pcm16", 24000)
    payload = tone(0.5, 24000)
    whole = b"".join(c.pcm for c in convert_in_pieces(fmt, payload, []))
    pieces = b"".join(c.pcm for c in convert_in_pieces(fmt, payload, cuts))
    assert len(whole) == len(pieces) == 2 * 8000
    difference = np.frombuffer(whole, "<i2").astype(int) - np.frombuffer(pieces, "<i2")
    assert np.abs(difference).max() <= 2


def test_bad_payloads_are_invalid_audio() -> None:
    inbound = InboundAudio(AudioFormat("pcm16", 16000), max_bytes=100)
    with pytest.raises(InvalidAudio, match="even"):
        inbound.convert(b"\x00\x01\x02")
    with pytest.raises(InvalidAudio, match="limit 100"):
        inbound.convert(bytes(102))
    assert inbound.pts == 0  # nothing was counted
    InboundAudio(AudioFormat("mulaw", 8000)).convert(b"\xff" * 3)  # any count is whole samples


def test_an_unusable_format_cannot_be_converted() -> None:
    with pytest.raises(ValueError, match="8000 Hz"):
        InboundAudio(AudioFormat("mulaw", 16000))


def test_outbound_audio_is_resampled_encoded_and_counted() -> None:
    outbound = OutboundAudio(AudioFormat("mulaw", 8000))
    data = outbound.convert(tone(0.5, 22050), 22050) + outbound.convert(tone(0.5, 22050), 22050)
    data += outbound.flush()
    assert len(data) == outbound.samples == 8000
    assert outbound.source_samples == 22050
    assert outbound.source_rate == 22050
    assert outbound.to_source(8000) == 22050
    assert outbound.to_source(4000) == 11025
    decoded = np.frombuffer(ulaw_to_pcm16(data), "<i2").astype(float)
    assert abs(int(np.argmax(np.abs(np.fft.rfft(decoded)))) - 440) <= 1
    with pytest.raises(ValueError, match="22050 Hz"):
        outbound.convert(tone(0.1, 16000), 16000)


def test_outbound_pcm_at_the_same_rate_is_untouched() -> None:
    outbound = OutboundAudio(AudioFormat("pcm16", 16000))
    assert outbound.convert(tone(0.1, 16000), 16000) == tone(0.1, 16000)
    assert outbound.flush() == b""
    assert OutboundAudio(AudioFormat("pcm16", 16000)).flush() == b""


def test_samples_to_ms_rounds_down() -> None:
    assert samples_to_ms(16000, 16000) == 1000
    assert samples_to_ms(15, 16000) == 0
    assert samples_to_ms(24, 24000) == 1
