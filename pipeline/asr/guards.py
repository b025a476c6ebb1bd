"""Pure checks that keep the recogniser from inventing text (no model, no I/O).

Whisper writes *something* for any input: "Thank you." for a breath, "I'm going to put the oil
in the pan." for white noise, a phrase repeated until the token limit when its window ends in
silence. The decoder (:mod:`pipeline.asr.decoder`) layers these checks, cheapest first, and
every rejection carries one of the :data:`REASONS` so nothing is dropped silently:

``silence``
    the loudest 20 ms frame is below ``silence_dbfs``: not decoded at all.
``too_short``
    less than ``min_active`` seconds of frames within 35 dB of the loudest one: a click, or an
    utterance cut before its first syllable.
``no_speech``
    Whisper's own rule, kept as a *pair*: the no-speech probability is above its threshold
    **and** the average token log-probability is below its threshold. Either alone misfires
    (a clean utterance scored 0.44 on no-speech; noise often decodes with middling log-prob).
``low_confidence``
    the average token log-probability is below ``min_avg_logprob`` whatever the no-speech
    probability says (truncated words, heavy clipping: measured here, such decodes were wrong
    text rather than the words spoken).
``runaway``
    the decode hit its token budget (``max_tokens_per_second`` of audio) without a repeated
    phrase to cut: text at an impossible speaking rate.
``empty``
    the decode produced no words.

Two guards repair rather than reject, and say so in the result's ``notes``:

``repetition_collapsed``
    :func:`collapse_repeats`: a phrase of two or more words seen three or more times in a row
    (a single word: four or more) is kept once, with any unfinished copy after the run removed.
``trailing_words_removed``
    (finals with word timings, in the decoder) words aligned wholly after the end of the audio,
    in the silence the decoder appended, are cut: nothing was said there. If no word is left,
    the final is dropped as ``no_speech``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.events import PIPELINE_RATE

SILENCE = "silence"
TOO_SHORT = "too_short"
NO_SPEECH = "no_speech"
LOW_CONFIDENCE = "low_confidence"
RUNAWAY = "runaway"
EMPTY = "empty"
REASONS = (SILENCE, TOO_SHORT, NO_SPEECH, LOW_CONFIDENCE, RUNAWAY, EMPTY)

#: frames within this many dB of the loudest frame count as active
ACTIVE_RANGE_DB = 35.0
#: longest repeated phrase looked for, in words
MAX_PHRASE_WORDS = 12

_NOT_WORD = re.compile(r"[^\w']+")


@dataclass(frozen=True, slots=True)
class Activity:
    """Loudness of a piece of audio, from 20 ms frame RMS levels."""

    #: the loudest frame, in dB relative to full scale (``-inf`` for digital silence)
    peak_dbfs: float
    #: seconds of frames within :data:`ACTIVE_RANGE_DB` of the loudest (and above the floor)
    active_seconds: float
    #: the first sample of the first active frame, and the sample after the last one
    #: (``0, 0`` when nothing is active)
    onset: int = 0
    offset: int = 0


def activity(
    audio: npt.NDArray[np.float32], *, rate: int = PIPELINE_RATE, floor_dbfs: float = -55.0
) -> Activity:
    """Measure ``audio`` (float samples in [-1, 1]) in 20 ms frames."""
    frame = rate // 50  # 20 ms
    count = len(audio) // frame
    if count == 0:
        tail = audio.astype(np.float64)
        level = float(np.sqrt(np.mean(tail**2))) if len(tail) else 0.0
        peak = 20.0 * np.log10(level) if level > 0 else float("-inf")
        if peak < floor_dbfs:
            return Activity(peak_dbfs=peak, active_seconds=0.0)
        return Activity(peak, len(audio) / rate, onset=0, offset=len(audio))
    frames = audio[: count * frame].astype(np.float64).reshape(count, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loudest = float(rms.max())
    if loudest <= 0.0:
        return Activity(peak_dbfs=float("-inf"), active_seconds=0.0)
    threshold = max(loudest * 10 ** (-ACTIVE_RANGE_DB / 20), 10 ** (floor_dbfs / 20))
    active = np.flatnonzero(rms >= threshold)
    return Activity(
        peak_dbfs=20.0 * float(np.log10(loudest)),
        active_seconds=len(active) * frame / rate,
        onset=int(active[0]) * frame if len(active) else 0,
        offset=(int(active[-1]) + 1) * frame if len(active) else 0,
    )


def is_no_speech(
    no_speech_prob: float,
    avg_logprob: float,
    *,
    no_speech_threshold: float,
    log_prob_threshold: float,
) -> bool:
    """Whisper's silence rule: both the no-speech probability is high and the text is unsure."""
    return no_speech_prob > no_speech_threshold and avg_logprob < log_prob_threshold


def normalise_word(word: str) -> str:
    """Lower case without punctuation: how repeats are compared."""
    return _NOT_WORD.sub("", word.lower())


def _copies_needed(phrase_words: int) -> int:
    return 4 if phrase_words == 1 else 3


def collapse_repeats(text: str) -> tuple[str, bool]:
    """Keep one copy of every phrase repeated in a row; return the text and whether it changed.

    Words are compared without case and punctuation, so "It was the age of wisdom, it was the
    age of wisdom." is two copies of one phrase. The first copy keeps its original spelling.
    Repeated until nothing changes (removing a run can make a new one).
    """
    words = text.split()
    changed = False
    while True:
        words, removed = _collapse_once(words)
        if not removed:
            return " ".join(words), changed
        changed = True


def _collapse_once(words: list[str]) -> tuple[list[str], bool]:
    keys = [normalise_word(w) for w in words]
    kept: list[str] = []
    removed = False
    i = 0
    while i < len(words):
        run = _repeat_at(keys, i)
        if run is None:
            kept.append(words[i])
            i += 1
            continue
        period, copies = run
        kept.extend(words[i : i + period])
        i += period * copies
        # an unfinished copy right after the run is part of the loop too
        rest = 0
        while rest < period and i + rest < len(keys) and keys[i + rest] == keys[i - period + rest]:
            rest += 1
        i += rest
        removed = True
    return kept, removed


def _repeat_at(keys: list[str], start: int) -> tuple[int, int] | None:
    """The shortest phrase starting at ``start`` repeated enough times in a row, if any."""
    if not keys[start]:
        return None
    for period in range(1, MAX_PHRASE_WORDS + 1):
        phrase = keys[start : start + period]
        if len(phrase) < period:
            return None
        copies = 1
        while keys[start + copies * period : start + (copies + 1) * period] == phrase:
            copies += 1
        if copies >= _copies_needed(period):
            return period, copies
    return None
