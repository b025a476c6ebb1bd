"""split_windows: where a long recording is cut (pure: synthetic signals, no model)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.asr.windows import split_windows
from pipeline.events import PIPELINE_RATE as RATE


def bursts(layout: list[tuple[str, float]], seed: int = 0) -> np.ndarray:
    """Loud noise for ``("s", seconds)``, faint noise for ``("p", seconds)`` (a pause)."""
    rng = np.random.default_rng(seed)
    pieces = [
        rng.normal(0, 0.3 if kind == "s" else 0.001, round(seconds * RATE)).astype(np.float32)
        for kind, seconds in layout
    ]
    return np.concatenate(pieces)


def test_short_audio_is_one_window() -> None:
    audio = np.ones(20 * RATE, dtype=np.int16)
    assert split_windows(audio) == [(0, 20 * RATE)]
    assert split_windows(np.zeros(0, dtype=np.int16)) == []


def test_cuts_fall_in_the_middle_of_the_latest_pause_that_fits() -> None:
    # pauses at 10-10.5 s (too early: windows last at least 12 s), 20-20.8 s and 35-35.6 s
    audio = bursts(
        [("s", 10), ("p", 0.5), ("s", 9.5), ("p", 0.8), ("s", 14.2), ("p", 0.6), ("s", 20)]
    )
    windows = split_windows(audio)
    cuts = [end / RATE for _, end in windows[:-1]]
    assert len(cuts) == 2
    assert 20.0 < cuts[0] < 20.8
    assert 35.0 < cuts[1] < 35.6
    assert windows[-1][1] == len(audio)


def test_a_recording_without_pauses_is_still_cut_within_the_limits() -> None:
    audio = bursts([("s", 70)])
    windows = split_windows(audio, max_seconds=28, min_seconds=12)
    assert all(end - start <= 28 * RATE for start, end in windows)
    assert all(end - start >= 12 * RATE for start, end in windows[:-1])


def test_the_scale_of_the_samples_does_not_matter() -> None:
    audio = bursts([("s", 15), ("p", 0.5), ("s", 20)], seed=3)
    as_int16 = (audio * 20000).astype(np.int16)
    assert split_windows(audio) == split_windows(as_int16)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="min_seconds"):
        split_windows(np.zeros(10), min_seconds=30, max_seconds=20)


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.floats(1, 120),
    max_seconds=st.floats(5, 29),
    share=st.floats(0.1, 1.0),
    seed=st.integers(0, 1000),
)
def test_windows_tile_the_audio_within_their_limits(
    seconds: float, max_seconds: float, share: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    envelope = np.repeat(rng.uniform(0, 1, int(seconds * 4) + 1), RATE // 4)
    audio = (rng.normal(0, 1, len(envelope)) * envelope)[: int(seconds * RATE)]
    min_seconds = max_seconds * share
    windows = split_windows(audio, max_seconds=max_seconds, min_seconds=min_seconds)
    assert windows[0][0] == 0
    assert windows[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert all(0 < end - start <= int(max_seconds * RATE) for start, end in windows)
    assert all(end - start >= int(min_seconds * RATE) for start, end in windows[:-1])
