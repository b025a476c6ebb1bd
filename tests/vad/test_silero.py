"""The Silero model on real speech, silence and noise; batching and per-session state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ModelError
from pipeline.vad import (
    FRAME_SAMPLES,
    SileroState,
    SileroVad,
    SpeechEnd,
    SpeechStart,
    VadRequest,
    packaged_model_path,
)
from tests.audio import noise, silence
from tests.vad.support import beckett_case, detect, espeak_case, loud_regions, probabilities

FRAME_TOLERANCE = FRAME_SAMPLES * 2  # 64 ms: two model frames


def test_the_packaged_model_is_found_without_importing_silero_vad() -> None:
    import sys

    path = packaged_model_path()
    assert path.name == "silero_vad.onnx"
    assert path.is_file()
    assert "silero_vad" not in sys.modules


def test_a_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load"):
        SileroVad(tmp_path / "missing.onnx")


def test_a_file_that_is_not_a_model_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match="cannot load"):
        SileroVad(path)


def test_the_model_path_can_be_given(vad_model: SileroVad) -> None:
    model = SileroVad(str(packaged_model_path()))
    frame = espeak_case()[20000 : 20000 + FRAME_SAMPLES]
    state = model.new_state()
    mine = model(VadRequest(frame=frame, state=state))
    shared = vad_model(VadRequest(frame=frame, state=state))
    assert mine.probability == shared.probability
    np.testing.assert_array_equal(mine.state.recurrent, shared.state.recurrent)


@pytest.mark.parametrize(
    "frame",
    [np.zeros(FRAME_SAMPLES - 1, np.int16), np.zeros(FRAME_SAMPLES, np.float32)],
    ids=["short", "float"],
)
def test_requests_take_512_int16_samples(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="512 int16"):
        VadRequest(frame=frame, state=SileroState.initial())


def test_speech_scores_high_and_silence_and_noise_low(vad_model: SileroVad) -> None:
    audio = espeak_case()
    probs = np.array(probabilities(vad_model, audio))
    ((begin, end),) = loud_regions(audio, threshold=300)
    inside = probs[begin // FRAME_SAMPLES + 2 : end // FRAME_SAMPLES - 2]
    before = probs[: begin // FRAME_SAMPLES - 1]
    after = probs[end // FRAME_SAMPLES + 4 :]
    assert np.median(inside) > 0.95
    assert before.max() < 0.1
    assert after.max() < 0.1
    assert max(probabilities(vad_model, silence(3.0))) < 0.05
    assert max(probabilities(vad_model, noise(3.0, level=0.05))) < 0.2
    assert max(probabilities(vad_model, noise(3.0, level=0.3, seed=1))) < 0.2


def test_an_espeak_sentence_is_one_utterance_with_accurate_bounds(vad_model: SileroVad) -> None:
    audio = espeak_case()
    ((begin, end),) = loud_regions(audio, threshold=300)
    start, stop = detect(probabilities(vad_model, audio))
    assert isinstance(start, SpeechStart)
    assert isinstance(stop, SpeechEnd)
    assert abs(start.sample - begin) <= FRAME_TOLERANCE
    assert -FRAME_TOLERANCE <= stop.sample - end <= 2 * FRAME_TOLERANCE
    assert start.audio_start == start.sample - 8000


def test_read_speech_is_cut_into_its_six_phrases(vad_model: SileroVad) -> None:
    audio = beckett_case()
    # reference bounds: where the recording rises above its background noise (~600)
    phrases = loud_regions(audio, threshold=1000)
    assert len(phrases) == 6
    transitions = detect(probabilities(vad_model, audio))
    starts = [t for t in transitions if isinstance(t, SpeechStart)]
    stops = [t for t in transitions if isinstance(t, SpeechEnd)]
    assert len(starts) == len(stops) == 6
    for (begin, end), start, stop in zip(phrases, starts, stops, strict=True):
        assert abs(start.sample - begin) <= FRAME_TOLERANCE
        # quiet phrase endings are still speech to the model: allow it to end a little later
        assert -FRAME_TOLERANCE <= stop.sample - end <= 4800


def test_silence_and_noise_give_no_speech(vad_model: SileroVad) -> None:
    audio = np.concatenate([silence(1.0), noise(3.0, level=0.1, seed=2), silence(1.0)])
    assert detect(probabilities(vad_model, audio)) == []


def sessions_audio() -> list[np.ndarray]:
    """Five different streams of the same length: speech, shifted speech, noise, silence."""
    speech = espeak_case()
    length = FRAME_SAMPLES * 120
    return [
        speech[:length],
        speech[1000 : 1000 + length],
        beckett_case()[15000 : 15000 + length],
        noise(length / 16000, level=0.1, seed=3),
        silence(length / 16000),
    ]


def test_a_batch_gives_each_session_what_it_gets_alone(vad_model: SileroVad) -> None:
    streams = sessions_audio()
    alone = [probabilities(vad_model, stream) for stream in streams]
    states = [vad_model.new_state() for _ in streams]
    batched: list[list[float]] = [[] for _ in streams]
    for index in range(len(alone[0])):
        frames = [s[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES] for s in streams]
        results = vad_model.batch(
            [VadRequest(frame=f, state=state) for f, state in zip(frames, states, strict=True)]
        )
        states = [result.state for result in results]
        for row, result in enumerate(results):
            batched[row].append(result.probability)
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    # and the comparison means something: the sessions differ
    assert max(alone[0]) > 0.9
    assert max(alone[4]) < 0.05


def test_sessions_may_join_and_leave_a_batch_at_any_frame(vad_model: SileroVad) -> None:
    """Batch composition changes every frame; each session's results do not."""
    streams = sessions_audio()
    alone = [probabilities(vad_model, stream) for stream in streams]
    states = [vad_model.new_state() for _ in streams]
    got: list[list[float]] = [[] for _ in streams]
    cursor = [0] * len(streams)
    rng = np.random.default_rng(5)
    while min(cursor) < len(alone[0]):
        waiting = [i for i in range(len(streams)) if cursor[i] < len(alone[0])]
        chosen = [i for i in waiting if rng.random() < 0.6] or waiting[:1]
        order = list(rng.permutation(chosen))
        requests = [
            VadRequest(
                frame=streams[i][cursor[i] * FRAME_SAMPLES : (cursor[i] + 1) * FRAME_SAMPLES],
                state=states[i],
            )
            for i in order
        ]
        for i, result in zip(order, vad_model.batch(requests), strict=True):
            states[i] = result.state
            got[i].append(result.probability)
            cursor[i] += 1
    for mine, reference in zip(got, alone, strict=True):
        np.testing.assert_allclose(mine, reference, atol=1e-5)


def test_a_state_is_a_value_that_calls_never_change(vad_model: SileroVad) -> None:
    speech = espeak_case()
    state = vad_model.new_state()
    for index in range(40, 50):
        state = vad_model(
            VadRequest(frame=speech[index * 512 : (index + 1) * 512], state=state)
        ).state
    saved = (state.recurrent.copy(), state.context.copy())
    frame = speech[50 * 512 : 51 * 512]
    first = vad_model(VadRequest(frame=frame, state=state))
    second = vad_model(VadRequest(frame=frame, state=state))
    assert first.probability == second.probability
    np.testing.assert_array_equal(state.recurrent, saved[0])
    np.testing.assert_array_equal(state.context, saved[1])
    np.testing.assert_array_equal(first.state.context, frame[-64:].astype(np.float32) / 32768)


def test_an_empty_batch_runs_nothing(vad_model: SileroVad) -> None:
    assert vad_model.batch([]) == []
