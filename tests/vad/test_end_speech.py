"""Ending speech at a pause on request (the end-of-turn model says the caller is done):
SpeechDetector.end_at and the stage's EndSpeechAt, with the real model."""

from __future__ import annotations

import anyio
import pytest

from pipeline.events import AudioFrame, Event
from pipeline.executor import ModelExecutor
from pipeline.vad import (
    DetectorConfig,
    SpeechDetector,
    SpeechEnd,
    SpeechPaused,
    SpeechStart,
    SpeechStopped,
    VadRequest,
    VadResult,
    VadStage,
)
from pipeline.vad.events import EndSpeechAt
from tests.stages import run_stage
from tests.vad.support import audio_frames, espeak_case

CONFIG = DetectorConfig(
    activation=0.5,
    deactivation=0.3,
    min_speech_samples=200,
    min_silence_samples=300,
    pre_roll_samples=150,
)


def detector_paused_at_500() -> SpeechDetector:
    """Speech from 0, silent from 500 on, fed up to 600 (the end not confirmed yet)."""
    detector = SpeechDetector(CONFIG)
    fed = [detector.feed(p, 100) for p in (0.9, 0.9, 0.9, 0.9, 0.9, 0.1)]
    assert fed[1] == [SpeechStart(sample=0, audio_start=0, probability=0.9)]
    assert detector.pause == 500
    return detector


def test_the_speech_ends_at_the_pause_asked_about_at_once() -> None:
    detector = detector_paused_at_500()
    assert detector.end_at(500) == [SpeechEnd(sample=500, start=0)]
    assert not detector.speaking
    assert detector.feed(0.1, 300) == []  # no second end when min_silence passes


def test_another_pause_or_no_speech_ends_nothing() -> None:
    detector = detector_paused_at_500()
    assert detector.end_at(400) == []
    assert detector.feed(0.9, 100) == []  # speaking on: the pause is over
    assert detector.end_at(500) == []
    assert detector.speaking
    assert SpeechDetector(CONFIG).end_at(0) == []


def test_speech_after_an_early_end_starts_afresh() -> None:
    detector = detector_paused_at_500()
    detector.end_at(500)
    out = [t for p in (0.9, 0.9, 0.9) for t in detector.feed(p, 100)]
    assert out == [SpeechStart(sample=600, audio_start=600, probability=0.9)]


Executor = ModelExecutor[VadRequest, VadResult]


def stops(events: list[Event]) -> list[tuple[int, int]]:
    """Each SpeechStopped's sample and the end of the audio sent before it."""
    out, sent = [], 0
    for event in events:
        if isinstance(event, AudioFrame):
            sent = event.pts + event.num_samples
        elif isinstance(event, SpeechStopped):
            out.append((event.sample, sent))
    return out


@pytest.mark.anyio
async def test_the_stage_ends_speech_at_the_pause_before_its_minimum_silence(
    shared_executor: Executor,
) -> None:
    audio = espeak_case()
    frames: list[Event] = list(audio_frames(audio, [320]))
    with anyio.fail_after(60):
        plain = await run_stage(VadStage(shared_executor), frames)
        (pause,) = [e.sample for e in plain if isinstance(e, SpeechPaused)][-1:]
        ((natural, natural_sent),) = stops(plain)
        assert natural == pause
        # the request arrives 150 ms into the silence, in order with the audio
        cut = next(
            i for i, f in enumerate(frames) if isinstance(f, AudioFrame) and f.pts > pause + 2400
        )
        asked = [*frames[:cut], EndSpeechAt(session_id="s", sample=pause), *frames[cut:]]
        early = await run_stage(VadStage(shared_executor), asked)
        wrong = [*frames[:cut], EndSpeechAt(session_id="s", sample=pause - 1), *frames[cut:]]
        unchanged = await run_stage(VadStage(shared_executor), wrong)
    ((sample, sent),) = stops(early)
    assert sample == pause
    assert sent < natural_sent  # before the VAD's own minimum silence had passed
    assert not [e for e in early if isinstance(e, EndSpeechAt)]  # consumed by the stage
    assert stops(unchanged) == stops(plain)


@pytest.mark.anyio
async def test_with_until_the_stage_ends_speech_once_it_has_heard_the_silence_that_far(
    shared_executor: Executor,
) -> None:
    audio = espeak_case()
    frames: list[Event] = list(audio_frames(audio, [320]))
    with anyio.fail_after(60):
        plain = await run_stage(VadStage(shared_executor), frames)
        (pause,) = [e.sample for e in plain if isinstance(e, SpeechPaused)][-1:]
        ((_, natural_sent),) = stops(plain)
        # asked 150 ms into the silence (a client's audio stalled), to end once 250 ms is heard
        cut = next(
            i for i, f in enumerate(frames) if isinstance(f, AudioFrame) and f.pts > pause + 2400
        )
        ask = EndSpeechAt(session_id="s", sample=pause, until=pause + 4000)
        early = await run_stage(VadStage(shared_executor), [*frames[:cut], ask, *frames[cut:]])
    ((sample, sent),) = stops(early)
    assert sample == pause
    assert pause + 4000 <= sent < natural_sent  # heard that far, before the VAD's own stop
