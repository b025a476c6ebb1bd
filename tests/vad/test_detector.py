"""SpeechDetector: golden tables, edge cases, and re-chunking properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.vad.detector import DetectorConfig, SpeechDetector, SpeechEnd, SpeechStart, Transition

# Small round numbers so the tables read easily: frames of 100 samples.
CONFIG = DetectorConfig(
    activation=0.5,
    deactivation=0.3,
    min_speech_samples=200,
    min_silence_samples=300,
    pre_roll_samples=150,
)


def run(
    probs: list[float], frame: int = 100, config: DetectorConfig = CONFIG, start: int = 0
) -> list[Transition]:
    detector = SpeechDetector(config, start=start)
    out: list[Transition] = []
    for probability in probs:
        out += detector.feed(probability, frame)
    return out


GOLDEN: list[tuple[str, list[float], list[Transition]]] = [
    ("silence stays silent", [0.0] * 10, []),
    ("probabilities between the thresholds never start speech", [0.4] * 10, []),
    ("a blip shorter than min_speech is ignored", [0.0, 0.9, 0.1, 0.0], []),
    (
        "speech starts where its run began, once min_speech long",
        [0.0, 0.0, 0.0, 0.9, 0.9, 0.9],
        [SpeechStart(sample=300, audio_start=150, probability=0.9)],
    ),
    (
        "hysteresis: the run goes on above deactivation; peak probability is reported",
        [0.0, 0.0, 0.6, 0.35, 0.35],
        [SpeechStart(sample=200, audio_start=50, probability=0.6)],
    ),
    (
        "a dip below deactivation restarts the run",
        [0.0, 0.9, 0.2, 0.7, 0.7],
        [SpeechStart(sample=300, audio_start=150, probability=0.7)],
    ),
    (
        "pre-roll stops at the stream start",
        [0.9, 0.9, 0.9],
        [SpeechStart(sample=0, audio_start=0, probability=0.9)],
    ),
    (
        "speech ends where silence began, once min_silence long",
        [0.0, 0.0, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1],
        [
            SpeechStart(sample=200, audio_start=50, probability=0.9),
            SpeechEnd(sample=500, start=200),
        ],
    ),
    (
        "probabilities above deactivation keep speech going",
        [0.9, 0.9, 0.4, 0.4, 0.4, 0.4, 0.1, 0.1],
        [SpeechStart(sample=0, audio_start=0, probability=0.9)],
    ),
    (
        "a short pause does not end speech",
        [0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1],
        [
            SpeechStart(sample=0, audio_start=0, probability=0.9),
            SpeechEnd(sample=500, start=0),
        ],
    ),
    (
        "pre-roll never reaches back before the previous end was confirmed",
        [0.9, 0.9, 0.0, 0.0, 0.0, 0.9, 0.9],
        [
            SpeechStart(sample=0, audio_start=0, probability=0.9),
            SpeechEnd(sample=200, start=0),
            SpeechStart(sample=500, audio_start=500, probability=0.9),
        ],
    ),
    (
        "thresholds are inclusive: activation starts, deactivation sustains",
        [0.5, 0.3, 0.29, 0.29, 0.29],
        [
            SpeechStart(sample=0, audio_start=0, probability=0.5),
            SpeechEnd(sample=200, start=0),
        ],
    ),
]


@pytest.mark.parametrize(("probs", "expected"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN])
def test_golden_table(probs: list[float], expected: list[Transition]) -> None:
    assert run(probs) == expected


def test_positions_count_from_the_stream_start() -> None:
    assert run([0.0, 0.9, 0.9, 0.1, 0.1, 0.1], start=16000) == [
        SpeechStart(sample=16100, audio_start=16000, probability=0.9),
        SpeechEnd(sample=16300, start=16100),
    ]


def test_frames_larger_than_the_minimums_decide_inside_one_frame() -> None:
    assert run([0.0, 0.9, 0.0], frame=1000) == [
        SpeechStart(sample=1000, audio_start=850, probability=0.9),
        SpeechEnd(sample=2000, start=1000),
    ]


def test_zero_min_speech_starts_on_the_first_loud_frame() -> None:
    config = DetectorConfig(min_speech_samples=0, min_silence_samples=100, pre_roll_samples=0)
    assert run([0.1, 0.8], config=config) == [
        SpeechStart(sample=100, audio_start=100, probability=0.8)
    ]


def test_empty_frames_change_nothing() -> None:
    detector = SpeechDetector(CONFIG)
    assert detector.feed(0.9, 0) == []
    assert detector.position == 0
    assert not detector.speaking


def test_flush_closes_speech_at_the_end_of_the_stream() -> None:
    detector = SpeechDetector(CONFIG)
    for probability in [0.9, 0.9, 0.9]:
        detector.feed(probability, 100)
    assert detector.flush() == [SpeechEnd(sample=300, start=0)]
    assert not detector.speaking
    assert detector.flush() == []


def test_flush_closes_speech_where_an_unconfirmed_silence_began() -> None:
    detector = SpeechDetector(CONFIG)
    for probability in [0.9, 0.9, 0.1, 0.1]:
        detector.feed(probability, 100)
    assert detector.flush() == [SpeechEnd(sample=200, start=0)]


def test_flush_forgets_an_unconfirmed_start() -> None:
    detector = SpeechDetector(CONFIG)
    detector.feed(0.9, 100)
    assert detector.flush() == []
    # and the next run starts afresh, with pre-roll no earlier than the flush
    assert [*detector.feed(0.9, 100), *detector.feed(0.9, 100)] == [
        SpeechStart(sample=100, audio_start=100, probability=0.9)
    ]


def test_negative_frame_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        SpeechDetector().feed(0.5, -1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"activation": 0.3, "deactivation": 0.5},
        {"activation": 1.5},
        {"deactivation": -0.1},
        {"min_speech_samples": -1},
        {"pre_roll_samples": -1},
        {"min_silence_samples": 0},
    ],
)
def test_inconsistent_configs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        DetectorConfig(**kwargs)  # type: ignore[arg-type]


def test_config_from_seconds() -> None:
    assert DetectorConfig.from_seconds(
        min_speech=0.25, min_silence=0.5, pre_roll=0.3, activation=0.6, deactivation=0.4
    ) == DetectorConfig(
        activation=0.6,
        deactivation=0.4,
        min_speech_samples=4000,
        min_silence_samples=8000,
        pre_roll_samples=4800,
    )


# -- properties ------------------------------------------------------------------------------

PROBABILITIES = st.sampled_from([0.0, 0.1, 0.29, 0.3, 0.31, 0.45, 0.5, 0.51, 0.8, 1.0])
FRAMES = st.lists(st.tuples(PROBABILITIES, st.integers(1, 700)), max_size=60)
CONFIGS = st.builds(
    DetectorConfig,
    activation=st.just(0.5),
    deactivation=st.sampled_from([0.3, 0.5]),
    min_speech_samples=st.integers(0, 1500),
    min_silence_samples=st.integers(1, 1500),
    pre_roll_samples=st.integers(0, 1500),
)


def feed_all(config: DetectorConfig, frames: list[tuple[float, int]]) -> list[Transition]:
    detector = SpeechDetector(config, start=7)
    out: list[Transition] = []
    for probability, length in frames:
        out += detector.feed(probability, length)
    return out + detector.flush()


@given(config=CONFIGS, frames=FRAMES, cuts=st.lists(st.integers(1, 699), max_size=60))
def test_cutting_frames_into_smaller_ones_changes_no_transition(
    config: DetectorConfig, frames: list[tuple[float, int]], cuts: list[int]
) -> None:
    """Decisions are made per sample: only the probability of each sample matters."""
    pieces: list[tuple[float, int]] = []
    for index, (probability, length) in enumerate(frames):
        cut = cuts[index] if index < len(cuts) else length
        if 0 < cut < length:
            pieces += [(probability, cut), (probability, length - cut)]
        else:
            pieces.append((probability, length))
    assert feed_all(config, pieces) == feed_all(config, frames)


@given(config=CONFIGS, frames=st.lists(st.tuples(PROBABILITIES, st.integers(1, 300)), max_size=30))
def test_frames_of_one_sample_give_the_same_transitions(
    config: DetectorConfig, frames: list[tuple[float, int]]
) -> None:
    samples = [(probability, 1) for probability, length in frames for _ in range(length)]
    assert feed_all(config, samples) == feed_all(config, frames)


@given(config=CONFIGS, frames=FRAMES)
def test_transitions_alternate_and_respect_the_minimums(
    config: DetectorConfig, frames: list[tuple[float, int]]
) -> None:
    transitions = feed_all(config, frames)
    previous_confirmed = 7
    for index, transition in enumerate(transitions):
        if index % 2 == 0:
            assert isinstance(transition, SpeechStart)
            assert transition.probability >= config.activation
            assert transition.audio_start == max(
                previous_confirmed, transition.sample - config.pre_roll_samples
            )
        else:
            assert isinstance(transition, SpeechEnd)
            start = transitions[index - 1]
            assert isinstance(start, SpeechStart)
            assert transition.start == start.sample
            assert transition.sample >= start.sample + config.min_speech_samples
            previous_confirmed = transition.sample + config.min_silence_samples
    # the stream is flushed, so open speech was closed
    assert len(transitions) % 2 == 0
