"""Cutting a long recording into windows the decoder takes, at its pauses (pure, no model).

The decoder reads at most about 29 s per request (:attr:`DecodeOptions.max_audio_seconds`),
so a file is decoded window by window. A cut in the middle of a word loses that word, so each
cut goes where the audio is quietest: among the candidate positions between ``min_seconds``
and ``max_seconds`` after the window's start, the centre of the ``quiet_seconds`` stretch with
the least energy. Near-ties (within ``tie_db`` of the quietest) go to the latest candidate, so
windows are as long as they may be (fewer decodes, more context per decode); in a file with
pauses that puts the cut in the middle of a pause at least ``quiet_seconds`` long.

Rules, for ``n`` samples:

- ``n <= max_seconds``: one window, the whole file;
- otherwise windows tile ``[0, n)`` in order, with no gap or overlap, each at most
  ``max_seconds`` long, and each but the last at least ``min_seconds`` long.

Energy is measured in 10 ms frames of the samples as given (int16 or float), so the result
does not depend on the scale of the audio, only on its shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.events import PIPELINE_RATE

#: floor of the frame energies, in dB (digital silence would be minus infinity)
FLOOR_DB = -200.0


def split_windows(
    audio: npt.NDArray[Any],
    *,
    rate: int = PIPELINE_RATE,
    max_seconds: float = 28.0,
    min_seconds: float = 12.0,
    quiet_seconds: float = 0.3,
    tie_db: float = 1.0,
) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges tiling ``audio``; see the module docstring."""
    if not 0 < min_seconds <= max_seconds:
        raise ValueError("need 0 < min_seconds <= max_seconds")
    n = len(audio)
    longest = int(max_seconds * rate)
    if n <= longest:
        return [(0, n)] if n else []
    frame = max(1, rate // 100)
    energy = _frame_db(audio, frame)
    quiet_frames = max(1, round(quiet_seconds * rate / frame))
    sums = np.concatenate([[0.0], np.cumsum(energy)])  # sums[b] - sums[a]: energy[a:b]
    windows: list[tuple[int, int]] = []
    start = 0
    shortest = int(min_seconds * rate)
    while n - start > longest:
        first = -(-(start + shortest) // frame)  # frame boundaries in [start+min, start+max]
        last = max(first, (start + longest) // frame)
        cut = _quietest(sums, quiet_frames, first, last, len(energy), tie_db) * frame
        cut = min(max(cut, start + shortest), start + longest)
        windows.append((start, cut))
        start = cut
    windows.append((start, n))
    return windows


def _frame_db(audio: npt.NDArray[Any], frame: int) -> npt.NDArray[np.float64]:
    """Energy in dB of each whole frame (the last partial frame counts as a frame too)."""
    samples = np.asarray(audio, dtype=np.float64)
    count = -(-len(samples) // frame)
    padded = np.zeros(count * frame, dtype=np.float64)
    padded[: len(samples)] = samples
    power = np.mean(padded.reshape(count, frame) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        db: npt.NDArray[np.float64] = np.maximum(10.0 * np.log10(power), FLOOR_DB)
    return db


def _quietest(
    sums: npt.NDArray[np.float64], width: int, first: int, last: int, frames: int, tie_db: float
) -> int:
    """The frame boundary in ``[first, last]`` whose centred stretch of ``width`` frames is
    quietest (the latest of the near-ties)."""
    boundaries = np.arange(first, last + 1)
    # the stretch [b - width // 2, b - width // 2 + width), moved inside the frames
    width = min(width, frames)
    lo = np.clip(boundaries - width // 2, 0, frames - width)
    mean = (sums[lo + width] - sums[lo]) / width
    best = float(mean.min())
    candidates = np.flatnonzero(mean <= best + tie_db)
    return int(boundaries[candidates[-1]])
