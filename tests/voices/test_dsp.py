"""Signal processing, measured on synthetic signals whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from voices import dsp

RATE = 22050


def voice_like(f0: float, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    """A harmonic signal with a slow vibrato around ``f0`` (a crude vowel)."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / rate
    signal = np.sum([np.sin(h * phase) / h for h in range(1, 10)], axis=0)
    result: np.ndarray = 0.3 * signal / np.max(np.abs(signal))
    return result


@pytest.mark.parametrize("f0", [80.0, 120.0, 220.0, 400.0])
def test_f0_of_a_harmonic_signal(f0: float) -> None:
    assert dsp.median_f0(voice_like(f0), RATE) == pytest.approx(f0, rel=0.01)


def test_noise_and_silence_are_unvoiced() -> None:
    rng = np.random.default_rng(1)
    track = dsp.f0_track(np.concatenate([np.zeros(RATE // 2), voice_like(150, 0.5)]), RATE)
    assert np.isnan(track[:30]).all()
    assert not np.isnan(track[-20:]).any()
    assert np.isnan(dsp.median_f0(np.zeros(RATE), RATE))
    noise = dsp.f0_track(rng.standard_normal(RATE), RATE)
    assert np.mean(np.isnan(noise)) > 0.9
    assert len(dsp.f0_track(np.zeros(10), RATE)) == 0


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.25, 2.0])
def test_time_stretch_changes_length_not_pitch(factor: float) -> None:
    x = voice_like(130)
    y = dsp.time_stretch(x, factor, RATE)
    assert len(y) == round(len(x) * factor)
    assert dsp.median_f0(y, RATE) == pytest.approx(130, rel=0.01)
    assert dsp.rms(y) == pytest.approx(dsp.rms(x), rel=0.05)


@pytest.mark.parametrize("ratio", [0.7, 0.8, 1.2, 1.4])
def test_pitch_shift_changes_pitch_not_length(ratio: float) -> None:
    x = voice_like(120)
    y = dsp.pitch_shift(x, ratio, RATE)
    assert len(y) == len(x)
    assert dsp.median_f0(y, RATE) == pytest.approx(120 * ratio, rel=0.01)


def test_unit_transforms_are_copies() -> None:
    x = voice_like(100, 0.1)
    for y in (dsp.time_stretch(x, 1.0, RATE), dsp.pitch_shift(x, 1.0, RATE)):
        assert np.array_equal(x, y)
        assert y is not x
    with pytest.raises(ValueError, match="positive"):
        dsp.pitch_shift(x, 0.0, RATE)


def test_gain_below_the_ceiling_is_a_plain_multiplication() -> None:
    x = voice_like(100)
    assert np.allclose(dsp.apply_gain(x, 2.0, RATE), 2 * x)
    assert np.allclose(dsp.apply_gain(x, 0.5, RATE), 0.5 * x)


def test_gain_above_the_ceiling_is_limited_not_clipped() -> None:
    # speech-like: loud syllables and quiet ones
    quiet = voice_like(100, 0.3)
    x = np.concatenate([quiet * 2, quiet, quiet * 0.5])
    y = dsp.apply_gain(x, 2.0, RATE, ceiling=0.9)
    assert np.max(np.abs(y)) <= 0.9
    assert dsp.rms(y) > 1.3 * dsp.rms(x)
    # the quiet parts get the whole gain; the loud part is turned down smoothly, not clipped
    assert np.allclose(y[-3000:], 2 * x[-3000:])
    clipped = np.mean(np.abs(y) >= 0.9 - 1e-9)
    assert clipped < 0.001


def test_whisper_keeps_the_level_and_removes_the_voicing() -> None:
    x = voice_like(140)
    y = dsp.whisper(x, RATE)
    assert len(y) == len(x)
    assert dsp.rms(y) == pytest.approx(dsp.rms(x), rel=0.01)
    assert np.mean(np.isnan(dsp.f0_track(y, RATE))) > 0.9
    assert np.array_equal(y, dsp.whisper(x, RATE))  # deterministic


def test_speech_bounds() -> None:
    x = np.concatenate([np.zeros(100), np.ones(50) * 0.5, np.zeros(30)])
    assert dsp.speech_bounds(x, 0.1) == (100, 150)
    assert dsp.speech_bounds(np.zeros(10), 0.1) == (0, 0)
