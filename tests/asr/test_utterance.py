"""UtteranceTracker: which audio is decoded, and when (sans-I/O, counted in samples)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.asr.utterance import Decode, TrackerConfig, UtteranceTracker
from pipeline.events import Pcm

CONFIG = TrackerConfig(
    first_partial=800,
    partial_interval=1000,
    end_margin=300,
    max_utterance=32000,
    split_search=8000,
    pre_roll_keep=2000,
)


def ramp(start: int, count: int) -> Pcm:
    """Samples that name their own position: sample at pts ``p`` is ``p % 30000``."""
    return (np.arange(start, start + count) % 30000).astype(np.int16)


def assert_covers(action: Decode, start: int, end: int) -> None:
    assert (action.start, action.end) == (start, end)
    np.testing.assert_array_equal(action.audio, ramp(start, end - start))


def feed(tracker: UtteranceTracker, start: int, end: int, size: int = 320) -> list[Decode]:
    out: list[Decode] = []
    for pts in range(start, end, size):
        out += tracker.audio(pts, ramp(pts, min(size, end - pts)))
    return out


def test_speech_mode_events_come_before_their_audio() -> None:
    tracker = UtteranceTracker(CONFIG)
    assert tracker.speech_started(audio_start=8000, speech_start=8500) == []
    assert tracker.in_speech
    partials = feed(tracker, 8000, 12000, size=100)
    # the first partial once 800 samples follow the speech start, then every 1000 samples
    assert [p.end for p in partials] == [9300, 10300, 11300]
    assert all(not p.final and p.reason == "partial" and p.utterance == 0 for p in partials)
    assert_covers(partials[0], 8000, 9300)
    feed(tracker, 12000, 12600, size=100)
    (final,) = tracker.speech_stopped(12000)
    assert final.final
    assert final.reason == "speech_stopped"
    assert_covers(final, 8000, 12300)  # the end of speech plus the margin
    assert not tracker.in_speech


def test_a_pause_gets_a_speculative_final_and_the_utterance_stays_open() -> None:
    tracker = UtteranceTracker(CONFIG)
    tracker.speech_started(audio_start=8000, speech_start=8500)
    feed(tracker, 8000, 12160, size=160)
    (guess,) = tracker.speech_paused(12000)
    assert (guess.final, guess.speculative, guess.stop, guess.utterance) == (True, True, 12000, 0)
    assert_covers(guess, 8000, 12160)  # the margin, as far as the audio goes
    assert tracker.in_speech  # the caller may go on
    feed(tracker, 12160, 12600, size=160)
    (final,) = tracker.speech_stopped(12000)
    assert (final.reason, final.stop, final.speculative) == ("speech_stopped", 12000, False)
    assert (final.utterance, final.start) == (guess.utterance, guess.start)
    assert tracker.speech_paused(12500) == []  # no speech, no pause


def test_all_mode_events_come_after_their_audio() -> None:
    tracker = UtteranceTracker(CONFIG)
    assert feed(tracker, 0, 6000) == []
    tracker.speech_started(audio_start=4500, speech_start=5000)
    feed(tracker, 6000, 9000)
    (final,) = tracker.speech_stopped(8000)
    assert_covers(final, 4500, 8300)
    # the next utterance reaches back into what followed the first one's end
    feed(tracker, 9000, 10000)
    tracker.speech_started(audio_start=8100, speech_start=8600)
    (final,) = tracker.end_of_stream()
    assert (final.utterance, final.reason) == (1, "end_of_stream")
    assert_covers(final, 8300, 10000)  # not before the previous cut: no sample twice


def test_only_the_pre_roll_is_kept_while_nobody_speaks() -> None:
    tracker = UtteranceTracker(CONFIG)
    feed(tracker, 0, 10000)
    tracker.speech_started(audio_start=5000)  # further back than the 2000 kept
    (final,) = tracker.end_of_stream()
    assert_covers(final, 8000, 10000)


def test_an_overlong_utterance_is_cut_at_its_quietest_point() -> None:
    config = TrackerConfig(partial_interval=0, max_utterance=32000, split_search=8000)
    tracker = UtteranceTracker(config)
    tracker.speech_started(audio_start=0)
    loud = np.full(40000, 8000, dtype=np.int16)
    loud[29000:29400] = 0  # a short pause 2 s before the limit
    actions = tracker.audio(0, loud)
    (final,) = actions
    assert (final.reason, final.final) == ("max_length", True)
    assert 29000 <= final.end <= 29400
    assert (tracker.in_speech, tracker.utterance) == (True, 1)  # the next utterance goes on
    (rest,) = tracker.end_of_stream()
    assert (rest.start, rest.end) == (final.end, 40000)


def test_a_gap_in_the_stream_closes_the_utterance() -> None:
    tracker = UtteranceTracker(CONFIG)
    tracker.speech_started(audio_start=0)
    feed(tracker, 0, 3000, size=3000)
    actions = feed(tracker, 5000, 6000, size=1000)
    finals = [a for a in actions if a.final]
    assert [(f.reason, f.start, f.end) for f in finals] == [("gap", 0, 3000)]
    assert not tracker.in_speech
    assert tracker.end == 6000


def test_stops_without_a_start_and_starts_without_a_stop() -> None:
    tracker = UtteranceTracker(CONFIG)
    assert tracker.speech_stopped(100) == []
    assert tracker.end_of_stream() == []
    tracker.speech_started(audio_start=0)
    feed(tracker, 0, 2000)
    (closed,) = tracker.speech_started(audio_start=2000)
    assert (closed.utterance, closed.reason) == (0, "speech_stopped")
    assert tracker.utterance == 1


def test_partials_can_be_turned_off() -> None:
    tracker = UtteranceTracker(TrackerConfig(partial_interval=0))
    tracker.speech_started(audio_start=0)
    assert feed(tracker, 0, 48000) == []


def test_durations_in_seconds() -> None:
    config = TrackerConfig.from_seconds(partial_interval=0.25, max_utterance=10.0)
    assert (config.partial_interval, config.max_utterance) == (4000, 160000)
    with pytest.raises(ValueError, match="negative"):
        TrackerConfig(end_margin=-1)
    with pytest.raises(ValueError, match="split_search"):
        TrackerConfig(split_search=0)


def run(chunks: Iterable[int], speech: list[tuple[int, int]], total: int) -> list[Decode]:
    """Feed ``total`` samples cut into ``chunks`` sizes (cycled), with speech events placed
    as the VAD's ``forward="all"`` mode does: each right after the audio it describes (a chunk
    is split where an event falls, as the VAD decides at sample precision)."""
    tracker = UtteranceTracker(CONFIG)
    sizes = list(chunks)
    events = sorted(
        [(s, "start", s) for s, _ in speech] + [(e + 900, "stop", e) for _, e in speech]
    )
    out: list[Decode] = []
    pts, index = 0, 0
    while pts < total:
        size = min(sizes[index % len(sizes)], total - pts)
        if events:
            size = min(size, events[0][0] - pts)
        out += tracker.audio(pts, ramp(pts, size))
        pts += size
        index += 1
        while events and events[0][0] <= pts:
            _, kind, sample = events.pop(0)
            if kind == "start":
                out += tracker.speech_started(max(sample - 500, 0), sample)
            else:
                out += tracker.speech_stopped(sample)
    return out + tracker.end_of_stream()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=6))
def test_finals_do_not_depend_on_how_the_audio_is_cut(sizes: list[int]) -> None:
    speech = [(3000, 9000), (12000, 20000), (24000, 24500)]
    whole = run([30000], speech, 30000)
    pieces = run(sizes, speech, 30000)
    finals = [(a.utterance, a.start, a.end, a.reason) for a in pieces if a.final]
    assert finals == [(a.utterance, a.start, a.end, a.reason) for a in whole if a.final]
    for action in pieces:
        assert_covers(action, action.start, action.end)
    partial_ends = [a.end for a in pieces if not a.final]
    # partials only after speech began, at least one interval apart within an utterance
    for earlier, later in itertools.pairwise(partial_ends):
        assert later - earlier >= CONFIG.partial_interval or later < earlier


def test_discarding_drops_the_open_utterance_and_its_audio() -> None:
    """A client cleared its input mid-speech: no final for it, and none of its audio is the
    next utterance's pre-roll."""
    tracker = UtteranceTracker(CONFIG)
    tracker.speech_started(audio_start=0, speech_start=0)
    feed(tracker, 0, 4000)
    assert tracker.discard() == 0  # utterances up to 0 will get no final
    assert not tracker.in_speech
    assert tracker.speech_stopped(4000) == []
    assert tracker.end_of_stream() == []
    assert feed(tracker, 4000, 5000) == []
    assert tracker.speech_started(audio_start=3000, speech_start=4500) == []
    (final,) = tracker.speech_stopped(5000)
    assert final.utterance == 1
    assert_covers(final, 4000, 5000)  # nothing from before the discard
