"""The pure guard checks: loudness, Whisper's no-speech rule, the repetition collapse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.asr.guards import activity, collapse_repeats, is_no_speech, normalise_word

COLLAPSES = [
    # (decoded text, after the guard, changed)
    ("Thank you.", "Thank you.", False),
    ("Thank you. Thank you.", "Thank you. Thank you.", False),  # twice can be real
    ("Thank you. Thank you. Thank you. Thank", "Thank you.", True),
    ("Hello Hello Hello", "Hello Hello Hello", False),  # one word: four copies needed
    ("Hello Hello Hello Hello Hello", "Hello", True),
    ("no, no, no, no, not now", "no, not now", True),
    (
        "It was the age of wisdom, it was the age of wisdom, it was the age of wisdom, it was",
        "It was the age of wisdom,",
        True,
    ),
    ("Book a table Book a table Book a table Book a", "Book a table", True),
    ("we had everything, we had nothing", "we had everything, we had nothing", False),
    ("d s d s d s d s d s d", "d s", True),
    ("", "", False),
    ("... ... ... ...", "... ... ... ...", False),  # punctuation is not a phrase
]


@pytest.mark.parametrize(("text", "expected", "changed"), COLLAPSES)
def test_repeated_phrases_are_kept_once(text: str, expected: str, changed: bool) -> None:
    assert collapse_repeats(text) == (expected, changed)


@given(st.lists(st.sampled_from(["a", "b", "c", "A.", "b,"]), max_size=30))
def test_collapsing_is_idempotent_and_only_removes_words(words: list[str]) -> None:
    text = " ".join(words)
    once, _ = collapse_repeats(text)
    assert collapse_repeats(once) == (once, False)
    kept = once.split()
    it = iter(words)
    assert all(word in it for word in kept)  # a subsequence of the original


def test_words_compare_without_case_and_punctuation() -> None:
    assert normalise_word("It's,") == "it's"
    assert normalise_word("—") == ""


NO_SPEECH = [
    # (no_speech_prob, avg_logprob, dropped): both conditions, as in Whisper
    (0.9, -1.5, True),
    (0.9, -0.2, False),  # sure of its words: a quiet but clear utterance
    (0.44, -1.5, False),  # a clean espeak utterance scored 0.44 in a 30 s window
    (0.61, -0.51, True),
    (0.6, -0.6, False),  # thresholds are exclusive
]


@pytest.mark.parametrize(("no_speech", "logprob", "dropped"), NO_SPEECH)
def test_no_speech_needs_both_signals(no_speech: float, logprob: float, dropped: bool) -> None:
    result = is_no_speech(no_speech, logprob, no_speech_threshold=0.6, log_prob_threshold=-0.5)
    assert result is dropped


def test_activity_measures_the_loud_part() -> None:
    rate = 16000
    quiet = np.zeros(rate, dtype=np.float32)
    tone = (0.5 * np.sin(np.arange(rate // 2) * 0.1)).astype(np.float32)
    level = activity(np.concatenate([quiet, tone, quiet]))
    assert level.peak_dbfs == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
    assert level.active_seconds == pytest.approx(0.5, abs=0.02)
    assert abs(level.onset - rate) <= 320
    assert abs(level.offset - rate * 3 // 2) <= 320
    assert activity(quiet).peak_dbfs == float("-inf")
    assert activity(quiet).active_seconds == 0.0
    hiss = np.full(rate, 10 ** (-70 / 20), dtype=np.float32)  # -70 dBFS: under the floor
    assert activity(hiss).active_seconds == 0.0
    short = activity(tone[:100])  # shorter than a frame
    assert short.active_seconds == pytest.approx(100 / rate)
