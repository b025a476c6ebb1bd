"""VadStage through real channels, the real shared executor and the real model."""

from __future__ import annotations

import itertools

import anyio
import numpy as np
import pytest

from pipeline.channels import Channel, Policy
from pipeline.errors import InvalidAudio
from pipeline.events import AudioFrame, EndOfInput, Event, Flush, Interrupt, Pcm, TextChunk
from pipeline.executor import ModelExecutor
from pipeline.vad import (
    FRAME_SAMPLES,
    DetectorConfig,
    SileroVad,
    SpeechEnd,
    SpeechPaused,
    SpeechStart,
    SpeechStarted,
    SpeechStopped,
    VadRequest,
    VadResult,
    VadStage,
)
from pipeline.vad.stage import PAUSE_SAMPLES
from tests.audio import espeak, silence
from tests.stages import run_stage
from tests.vad.support import (
    SENTENCE,
    audio_frames,
    detect,
    espeak_case,
    loud_regions,
    probabilities,
)

Executor = ModelExecutor[VadRequest, VadResult]
CONFIG = DetectorConfig()  # 0.5/0.35, 250 ms speech, 500 ms silence, 500 ms pre-roll
TOLERANCE = 2 * FRAME_SAMPLES


def no_pauses(executor: Executor, **options: object) -> VadStage:
    """A stage that sends no :class:`SpeechPaused` (the tests using it are about the rest)."""
    return VadStage(executor, pause_samples=0, **options)  # type: ignore[arg-type]


def audio_of(events: list[Event]) -> list[AudioFrame]:
    return [e for e in events if isinstance(e, AudioFrame)]


def others(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, AudioFrame)]


def joined(frames: list[AudioFrame]) -> Pcm:
    for previous, frame in itertools.pairwise(frames):
        assert frame.follows(previous)
    return np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2")


@pytest.mark.anyio
async def test_a_pause_is_announced_once_after_its_audio_and_the_stop_names_the_same_sample(
    shared_executor: Executor,
) -> None:
    with anyio.fail_after(30):
        audio = espeak_case()
        out = await run_stage(VadStage(shared_executor), audio_frames(audio, [320]))
    pauses = [i for i, e in enumerate(out) if isinstance(e, SpeechPaused)]
    (stop,) = [i for i, e in enumerate(out) if isinstance(e, SpeechStopped)]
    stopped = out[stop]
    assert isinstance(stopped, SpeechStopped)
    assert pauses
    assert pauses[-1] < stop
    last = out[pauses[-1]]
    assert isinstance(last, SpeechPaused)
    assert last.sample == stopped.sample  # the pause that became the end of speech
    samples = [e.sample for e in out if isinstance(e, SpeechPaused)]
    assert len(set(samples)) == len(samples)  # once per silence run
    for index in pauses:  # the audio up to the pause went first
        before = [e for e in out[:index] if isinstance(e, AudioFrame)]
        assert before[-1].end_pts >= out[index].sample + PAUSE_SAMPLES  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_speech_mode_sends_one_utterance_with_its_pre_roll(shared_executor: Executor) -> None:
    with anyio.fail_after(30):
        audio = espeak_case()
        ((begin, end),) = loud_regions(audio, threshold=300)
        out = await run_stage(no_pauses(shared_executor), audio_frames(audio, [320]))

    started, *frames, stopped = out
    assert isinstance(started, SpeechStarted)
    assert isinstance(stopped, SpeechStopped)
    assert all(isinstance(f, AudioFrame) for f in frames)
    assert started.session_id == stopped.session_id == "s"
    assert abs(started.sample - begin) <= TOLERANCE
    assert started.audio_start == started.sample - CONFIG.pre_roll_samples
    assert -TOLERANCE <= stopped.sample - end <= 2 * TOLERANCE
    assert stopped.speech_start == started.sample
    # the audio is the input, exactly, from the pre-roll to where the end was confirmed
    forwarded = audio_of(out)
    assert forwarded[0].pts == started.audio_start
    last = forwarded[-1].end_pts
    assert 0 <= last - (stopped.sample + CONFIG.min_silence_samples) < FRAME_SAMPLES
    np.testing.assert_array_equal(joined(forwarded), audio[started.audio_start : last])


@pytest.mark.anyio
async def test_the_stage_reports_what_the_model_and_detector_say(
    shared_executor: Executor, vad_model: SileroVad
) -> None:
    with anyio.fail_after(30):
        audio = espeak_case()
        out = await run_stage(no_pauses(shared_executor), audio_frames(audio, [320]))
    expected = detect(probabilities(vad_model, audio), CONFIG)
    got = others(out)
    assert len(got) == len(expected) == 2
    start, stop = expected
    assert isinstance(start, SpeechStart)
    assert isinstance(stop, SpeechEnd)
    assert got == [
        SpeechStarted(
            session_id="s",
            sample=start.sample,
            audio_start=start.audio_start,
            probability=start.probability,
        ),
        SpeechStopped(session_id="s", sample=stop.sample, speech_start=stop.start),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("sizes", [[160, 480, 1000, 7, 2048], [512], [16000], [10**6]], ids=str)
async def test_the_output_does_not_depend_on_how_the_input_is_cut(
    shared_executor: Executor, sizes: list[int]
) -> None:
    with anyio.fail_after(30):
        audio = espeak_case()
        reference = await run_stage(no_pauses(shared_executor), audio_frames(audio, [320]))
        out = await run_stage(no_pauses(shared_executor), audio_frames(audio, sizes))
    assert others(out) == others(reference)
    assert audio_of(out)[0].pts == audio_of(reference)[0].pts
    np.testing.assert_array_equal(joined(audio_of(out)), joined(audio_of(reference)))


@pytest.mark.anyio
async def test_all_mode_forwards_every_frame_unchanged_and_events_after_their_audio(
    shared_executor: Executor,
) -> None:
    with anyio.fail_after(30):
        frames = audio_frames(espeak_case(), [320], start=48000)
        out = await run_stage(no_pauses(shared_executor, forward="all"), frames)
    assert audio_of(out) == frames
    started, stopped = others(out)
    assert isinstance(started, SpeechStarted)
    assert isinstance(stopped, SpeechStopped)
    assert started.sample > 48000 + 16000 - TOLERANCE
    for event, decided_by in [
        (started, started.sample + CONFIG.min_speech_samples),
        (stopped, stopped.sample + CONFIG.min_silence_samples),
    ]:
        sent_before = audio_of(out[: out.index(event)])
        assert sent_before[-1].end_pts >= decided_by


@pytest.mark.anyio
async def test_other_events_pass_through(shared_executor: Executor) -> None:
    with anyio.fail_after(30):
        frames: list[Event] = list(audio_frames(espeak_case(), [320]))
        text = TextChunk(session_id="s", text="hello")
        interrupt = Interrupt(session_id="s", generation=3)
        end = EndOfInput(session_id="s")
        frames[10:10] = [text, interrupt]
        frames.append(end)
        out = await run_stage(no_pauses(shared_executor), frames)
    kinds = [type(e) for e in others(out)]
    assert sorted(kinds, key=str) == sorted(
        [TextChunk, Interrupt, EndOfInput, SpeechStarted, SpeechStopped], key=str
    )
    # data keeps its order: the text came in during the leading silence
    assert kinds.index(TextChunk) < kinds.index(SpeechStarted)
    assert text in out
    assert interrupt in out
    assert end in out


@pytest.mark.anyio
async def test_a_gap_or_the_end_of_input_closes_open_speech(shared_executor: Executor) -> None:
    with anyio.fail_after(30):
        audio = espeak_case()
        cut = 40000  # in the middle of the sentence
        first = audio_frames(audio[:cut], [320])
        second = audio_frames(audio[:cut], [320], start=10**6)
        out = await run_stage(no_pauses(shared_executor), [*first, *second])

    events = others(out)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped] * 2
    started, stopped, started_again, stopped_again = events
    assert isinstance(started, SpeechStarted)
    assert isinstance(stopped, SpeechStopped)
    assert isinstance(started_again, SpeechStarted)
    assert isinstance(stopped_again, SpeechStopped)
    # the first stream ends at the gap: speech stops at its last scored sample
    assert stopped.sample == cut - cut % FRAME_SAMPLES
    # the second starts afresh (new model state, new detector) and is reported the same way
    assert started_again.sample == started.sample + 10**6
    assert started_again.audio_start == started.audio_start + 10**6
    assert stopped_again.sample == stopped.sample + 10**6
    # every sample of both utterances was forwarded, the unscored tail included
    forwarded = audio_of(out)
    split = next(i for i, f in enumerate(forwarded) if f.pts >= 10**6)
    for frames, offset in [(forwarded[:split], 0), (forwarded[split:], 10**6)]:
        assert frames[0].pts == started.audio_start + offset
        assert frames[-1].end_pts == cut + offset
        np.testing.assert_array_equal(joined(frames), audio[started.audio_start : cut])


@pytest.mark.anyio
async def test_audio_at_another_rate_is_refused(shared_executor: Executor) -> None:
    with anyio.fail_after(30):
        inbox = Channel("in", 4, Policy.BLOCK)
        outbox = Channel("out", 4, Policy.BLOCK)
        inbox.send_nowait(AudioFrame(session_id="s", sample_rate=8000, pcm=bytes(320), pts=0))
        inbox.close()
        with pytest.raises(InvalidAudio, match="16000"):
            await no_pauses(shared_executor)(inbox, outbox)


@pytest.mark.anyio
async def test_sessions_sharing_the_executor_do_not_disturb_each_other(
    shared_executor: Executor,
) -> None:
    audio = espeak_case()
    inputs = {
        f"session-{i}": audio_frames(np.roll(audio, 1600 * i), [320], session=f"session-{i}")
        for i in range(6)
    }
    with anyio.fail_after(60):
        alone = {
            name: await run_stage(no_pauses(shared_executor), frames)
            for name, frames in inputs.items()
        }
        together: dict[str, list[Event]] = {}

        async def one(name: str) -> None:
            together[name] = await run_stage(no_pauses(shared_executor), inputs[name])

        async with anyio.create_task_group() as group:
            for name in inputs:
                group.start_soon(one, name)
    for name, reference in alone.items():
        assert together[name] == reference
        assert {e.session_id for e in reference} == {name}
    # the speech moved with each session's audio: these really are different streams
    starts = [others(alone[name])[0] for name in inputs]
    assert all(isinstance(s, SpeechStarted) for s in starts)
    assert len({s.sample for s in starts if isinstance(s, SpeechStarted)}) == 6


@pytest.mark.anyio
async def test_a_flush_ends_open_speech_at_once_with_all_audio_before_it(
    shared_executor: Executor,
) -> None:
    """Push-to-talk: speech with no trailing silence, then a commit. The utterance ends at the
    flush with every sample sent before it (the partial frame too), the stop comes before the
    flush, and audio after the flush is a new stream."""
    with anyio.fail_after(30):
        speech = np.concatenate([silence(1.0), espeak(SENTENCE)])
        before = audio_frames(speech, [320, 1000])
        flush = Flush(session_id="s")
        after = audio_frames(
            np.concatenate([silence(0.5), espeak(SENTENCE)]), [320], start=len(speech)
        )
        out = await run_stage(no_pauses(shared_executor), [*before, flush, *after])

    cut = out.index(flush)
    head, tail = out[:cut], out[cut + 1 :]
    started, stopped = others(head)
    assert isinstance(started, SpeechStarted)
    assert isinstance(stopped, SpeechStopped)
    assert isinstance(head[-1], SpeechStopped)  # the stop is the last thing before the flush
    assert stopped.sample <= len(speech)
    forwarded = audio_of(head)
    assert forwarded[-1].end_pts == len(speech)  # nothing held back for a silence to confirm
    np.testing.assert_array_equal(joined(forwarded), speech[started.audio_start :])
    # after the flush: a new stream, with its own speech (closed when the inbox ends)
    again_started, again_stopped = others(tail)
    assert isinstance(again_started, SpeechStarted)
    assert isinstance(again_stopped, SpeechStopped)
    assert again_started.audio_start >= len(speech)


@pytest.mark.anyio
async def test_a_flush_with_no_speech_open_is_passed_on_alone(shared_executor: Executor) -> None:
    with anyio.fail_after(30):
        flush = Flush(session_id="s")
        out = await run_stage(
            no_pauses(shared_executor), [*audio_frames(silence(1.0), [320]), flush]
        )
    assert out == [flush]
