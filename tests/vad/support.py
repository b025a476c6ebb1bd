"""Audio cases and helpers shared by the VAD tests."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np

from pipeline.events import PIPELINE_RATE as RATE
from pipeline.events import AudioFrame, Pcm
from pipeline.vad import (
    FRAME_SAMPLES,
    DetectorConfig,
    SileroVad,
    SpeechDetector,
    Transition,
    VadRequest,
)
from tests.audio import espeak, read_speech, silence

SENTENCE = "Hello there, I would like to book a table for four people tonight."


@functools.cache
def espeak_case() -> Pcm:
    """One second of silence, one espeak-ng sentence, 1.5 s of silence."""
    return np.concatenate([silence(1.0), espeak(SENTENCE), silence(1.5)])


@functools.cache
def beckett_case() -> Pcm:
    """Six read phrases (public-domain recording) between 1 s and 1.5 s of silence."""
    speech, rate = read_speech("beckett")
    assert rate == RATE
    return np.concatenate([silence(1.0), speech, silence(1.5)])


def loud_regions(samples: Pcm, threshold: int, merge_gap: int = 8000) -> list[tuple[int, int]]:
    """Reference speech boundaries: the spans where ``|x| > threshold``, gaps under
    ``merge_gap`` samples bridged. Each span is (first loud sample, last loud sample + 1)."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    spans: list[list[int]] = [[int(loud[0]), int(loud[0])]]
    for index in loud[1:]:
        if index - spans[-1][1] > merge_gap:
            spans.append([int(index), int(index)])
        else:
            spans[-1][1] = int(index)
    return [(begin, end + 1) for begin, end in spans]


def probabilities(model: SileroVad, samples: Pcm) -> list[float]:
    """One session's speech probability per whole 512-sample frame, one call at a time."""
    state = model.new_state()
    out = []
    for begin in range(0, len(samples) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        result = model(VadRequest(frame=samples[begin : begin + FRAME_SAMPLES], state=state))
        state = result.state
        out.append(result.probability)
    return out


def detect(probs: Iterable[float], config: DetectorConfig | None = None) -> list[Transition]:
    detector = SpeechDetector(config)
    out: list[Transition] = []
    for probability in probs:
        out += detector.feed(probability, FRAME_SAMPLES)
    return out + detector.flush()


def audio_frames(
    samples: Pcm, sizes: Sequence[int], *, session: str = "s", start: int = 0
) -> list[AudioFrame]:
    """``samples`` cut into contiguous frames of the given sizes (cycled), from ``pts=start``."""
    frames = []
    begin = 0
    index = 0
    while begin < len(samples):
        size = sizes[index % len(sizes)]
        chunk = samples[begin : begin + size]
        frames.append(
            AudioFrame(
                session_id=session,
                sample_rate=RATE,
                pcm=chunk.astype("<i2").tobytes(),
                pts=start + begin,
            )
        )
        begin += size
        index += 1
    return frames
