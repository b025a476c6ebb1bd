"""Signal processing on synthesized speech, in numpy: pitch, loudness, silence, F0.

Engines change what their model can change (Piper: phoneme lengths and noise). The rest is done
here, on the model's output, the same way for every engine:

- :func:`pitch_shift` raises or lowers the pitch without changing the duration: a WSOLA time
  stretch (:func:`time_stretch`, waveform-similarity overlap-add) by the pitch ratio, then a
  resampling (soxr) back to the original length. Formants move with the pitch, which is
  inaudible at the ratios SSML asks for (about -30% to +40%) and cheap.
- :func:`apply_gain` multiplies the amplitude; where that would pass ``ceiling`` a smoothed
  gain reduction (a limiter, no clipping) holds the peaks, so "loud" raises the RMS and
  not the distortion.
- :func:`whisper` replaces the voicing by noise shaped like the voice's spectral envelope.
- :func:`speech_bounds` finds where the sound starts and ends (to trim a synthesizer's own
  silence before an explicit pause).
- :func:`f0_track` and :func:`median_f0` measure the fundamental frequency (YIN), which is how
  the tests check pitch, and how a voice's base pitch is measured for absolute SSML values.

Every function takes float samples in ``[-1, 1]`` (or PCM16 values for the measurements) and
returns new arrays; none keeps state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
_TINY = 1e-12


def _as_float(samples: np.ndarray[Any, Any]) -> FloatArray:
    return np.asarray(samples, dtype=np.float64).reshape(-1)


def time_stretch(
    samples: np.ndarray[Any, Any],
    factor: float,
    sample_rate: int,
    *,
    frame_s: float = 0.03,
    tolerance_s: float = 0.008,
) -> FloatArray:
    """``samples`` lasting ``factor`` times as long (``round(len * factor)``), pitch unchanged.

    WSOLA: output frames of ``frame_s`` with half-frame hops are taken from the input at the
    ideal position (``output position / factor``) moved by up to ``tolerance_s`` to where the
    waveform best continues the previous frame (normalized cross-correlation), then
    overlap-added with a Hann window.
    """
    if factor <= 0:
        raise ValueError("the stretch factor must be positive")
    x = _as_float(samples)
    out_len = round(len(x) * factor)
    if factor == 1.0 or len(x) == 0:
        return x.copy()
    n = max(4, round(frame_s * sample_rate) // 2 * 2)
    hop = n // 2
    tol = max(1, round(tolerance_s * sample_rate))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann: hops sum to 1
    half = n // 2
    margin = tol + n
    tail = margin + n + int(np.ceil(2 * hop / factor))
    xp = np.concatenate([np.zeros(margin), x, np.zeros(tail)])
    energy = np.concatenate([[0.0], np.cumsum(xp * xp)])
    frames = out_len // hop + 2
    y = np.zeros((frames + 1) * hop + n)
    prev = 0
    for k in range(frames):
        # frame k covers output [k*hop - n/2, k*hop + n/2) and input [pos - n/2, pos + n/2)
        ideal = round(k * hop / factor)
        pos = ideal
        if k > 0:
            follow = margin + prev + hop - half  # what naturally continues the previous frame
            template = xp[follow : follow + n]
            begin = margin + ideal - tol - half  # candidates: centres ideal - tol .. ideal + tol
            scores = np.correlate(xp[begin : begin + n + 2 * tol], template, "valid")
            norms = (
                energy[begin + n : begin + n + len(scores)] - energy[begin : begin + len(scores)]
            )
            pos = ideal - tol + int(np.argmax(scores / np.sqrt(np.maximum(norms, _TINY))))
        y[k * hop : k * hop + n] += window * xp[margin + pos - half : margin + pos + half]
        prev = pos
    return y[half : half + out_len]


def pitch_shift(samples: np.ndarray[Any, Any], ratio: float, sample_rate: int) -> FloatArray:
    """``samples`` with every frequency multiplied by ``ratio``, same length (1.2 is +20%)."""
    if ratio <= 0:
        raise ValueError("the pitch ratio must be positive")
    x = _as_float(samples)
    if ratio == 1.0 or len(x) == 0:
        return x.copy()
    stretched = time_stretch(x, ratio, sample_rate)
    shifted = _as_float(soxr.resample(stretched, sample_rate * ratio, sample_rate, quality="HQ"))
    if len(shifted) >= len(x):
        return shifted[: len(x)]
    return np.concatenate([shifted, np.zeros(len(x) - len(shifted))])


def apply_gain(
    samples: np.ndarray[Any, Any],
    gain: float,
    sample_rate: int,
    *,
    ceiling: float = 0.98,
    window_s: float = 0.01,
) -> FloatArray:
    """``samples * gain``, with peaks held under ``ceiling`` by a smoothed gain reduction.

    The envelope is the largest magnitude within ``window_s`` on either side, averaged over
    ``window_s``; every average covers the sample itself, so the envelope never falls below it
    and the output never passes ``ceiling``, while the gain moves smoothly (no clipping).
    """
    if gain < 0:
        raise ValueError("the gain cannot be negative")
    y = _as_float(samples) * gain
    if len(y) == 0 or float(np.max(np.abs(y))) <= ceiling:
        return y
    radius = max(1, round(window_s * sample_rate))
    half = max(1, radius // 2)
    padded = np.pad(np.abs(y), radius, mode="constant")
    envelope = sliding_window_view(padded, 2 * radius + 1).max(axis=1)
    sums = np.concatenate([[0.0], np.cumsum(np.pad(envelope, half, mode="edge"))])
    smooth = (sums[2 * half + 1 :] - sums[: -2 * half - 1]) / (2 * half + 1)
    reduction = np.minimum(1.0, ceiling / np.maximum(smooth, _TINY))
    limited: FloatArray = np.clip(y * reduction, -ceiling, ceiling)  # the clip guards rounding
    return limited


def whisper(
    samples: np.ndarray[Any, Any],
    sample_rate: int,
    *,
    seed: int = 0,
    frame_s: float = 0.023,
    lifter: int = 40,
    high_pass_hz: float = 300.0,
) -> FloatArray:
    """``samples`` whispered: the voicing is replaced by noise with the same spectral envelope.

    Each short-time spectrum keeps its envelope (cepstral smoothing, ``lifter`` coefficients:
    the formants) but loses its harmonics (noise with a random phase in their place), and
    nothing below ``high_pass_hz`` remains; each frame keeps its energy. The result is
    deterministic for a given ``seed``.
    """
    x = _as_float(samples)
    n = 1 << max(6, round(np.log2(frame_s * sample_rate)))
    hop = n // 4
    if len(x) == 0:
        return x.copy()
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n))  # sqrt-Hann: WOLA pair
    padded = np.concatenate([np.zeros(n), x, np.zeros(n + hop)])
    frames = sliding_window_view(padded, n)[::hop] * window
    spectra = np.fft.rfft(frames, axis=1)
    log_magnitude = np.log(np.abs(spectra) + 1e-9)
    cepstrum = np.fft.irfft(log_magnitude, n, axis=1)
    cepstrum[:, lifter : n - lifter + 1] = 0.0
    envelope = np.exp(np.fft.rfft(cepstrum, axis=1).real)
    envelope[:, : int(high_pass_hz * n / sample_rate)] = 0.0
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(spectra.shape) + 1j * rng.standard_normal(spectra.shape)
    shaped = envelope * noise / np.sqrt(2)
    wanted = np.sum(np.abs(spectra) ** 2, axis=1, keepdims=True)
    got = np.sum(np.abs(shaped) ** 2, axis=1, keepdims=True)
    shaped *= np.sqrt(wanted / np.maximum(got, _TINY))
    out_frames = np.fft.irfft(shaped, n, axis=1) * window
    out = np.zeros(len(padded))
    for i, frame in enumerate(out_frames):
        out[i * hop : i * hop + n] += frame
    overlap = np.zeros(len(padded))
    for i in range(len(out_frames)):
        overlap[i * hop : i * hop + n] += window**2
    out = out[n : n + len(x)] / np.maximum(overlap[n : n + len(x)], 1e-3)
    # frames of noise add up in power, not in amplitude: restore the overall level
    return np.asarray(out * (rms(x) / max(rms(out), _TINY)), dtype=np.float64)


def speech_bounds(samples: np.ndarray[Any, Any], threshold: float) -> tuple[int, int]:
    """``(start, end)``: the first sample louder than ``threshold`` and one past the last."""
    loud = np.flatnonzero(np.abs(_as_float(samples)) > threshold)
    if len(loud) == 0:
        return 0, 0
    return int(loud[0]), int(loud[-1]) + 1


def rms(samples: np.ndarray[Any, Any]) -> float:
    """The root mean square of ``samples`` (0 for none)."""
    x = _as_float(samples)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def f0_track(
    samples: np.ndarray[Any, Any],
    sample_rate: int,
    *,
    fmin: float = 60.0,
    fmax: float = 500.0,
    hop_s: float = 0.01,
    threshold: float = 0.2,
    gate_db: float = -30.0,
) -> FloatArray:
    """The fundamental frequency in Hz every ``hop_s`` (YIN); ``nan`` where unvoiced.

    A frame is voiced when its RMS is within ``gate_db`` of the loudest frame and its
    cumulative-mean-normalized difference dips under ``threshold`` at some lag in
    ``[1/fmax, 1/fmin]``; the first such dip (refined to its minimum, with parabolic
    interpolation) is the period.
    """
    x = _as_float(samples)
    tau_min = max(2, int(sample_rate / fmax))
    tau_max = int(np.ceil(sample_rate / fmin))
    width = tau_max  # integration window: one longest period
    hop = max(1, round(hop_s * sample_rate))
    span = width + tau_max + 1
    if len(x) < span:
        return np.zeros(0)
    frames = sliding_window_view(x, span)[::hop]
    head = frames[:, :width]
    size = 1 << int(np.ceil(np.log2(span + width)))
    correlation = np.fft.irfft(np.conj(np.fft.rfft(head, size)) * np.fft.rfft(frames, size), size)[
        :, : tau_max + 1
    ]
    squares = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    shifted_energy = squares[:, taus + width] - squares[:, taus]
    difference = np.maximum(squares[:, width : width + 1] + shifted_energy - 2 * correlation, 0)
    cumulative = np.cumsum(difference[:, 1:], axis=1)
    normalized = np.ones_like(difference)
    normalized[:, 1:] = difference[:, 1:] * taus[1:] / np.maximum(cumulative, _TINY)
    level = np.sqrt(squares[:, width] / width)
    gate = float(np.max(level, initial=0.0)) * 10 ** (gate_db / 20)
    result = np.full(len(frames), np.nan)
    for i in range(len(frames)):
        if level[i] <= gate or level[i] <= _TINY:
            continue
        curve = normalized[i]
        below = np.flatnonzero(curve[tau_min : tau_max + 1] < threshold)
        if len(below) == 0:
            continue
        tau = int(below[0]) + tau_min
        while tau < tau_max and curve[tau + 1] < curve[tau]:
            tau += 1
        period = float(tau)
        if 0 < tau < tau_max:
            a, b, c = curve[tau - 1], curve[tau], curve[tau + 1]
            bend = a - 2 * b + c
            if bend > _TINY:
                period += 0.5 * (a - c) / bend
        result[i] = sample_rate / period
    return result


def median_f0(samples: np.ndarray[Any, Any], sample_rate: int, **options: float) -> float:
    """The median fundamental frequency of the voiced frames (``nan`` if none is voiced)."""
    track = f0_track(samples, sample_rate, **options)
    voiced = track[~np.isnan(track)]
    return float(np.median(voiced)) if len(voiced) else float("nan")
