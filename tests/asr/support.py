"""Audio, references and checks shared by the ASR tests."""

from __future__ import annotations

import difflib
import functools

import numpy as np

from pipeline.events import PIPELINE_RATE as RATE
from pipeline.events import Pcm
from tests.asr.wer import normalise
from tests.audio import espeak, read_speech, silence

BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
TWO_CITIES_OPENING = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness"
)
#: sentences the embedded model transcribes exactly from espeak-ng at 8 to 48 kHz
SENTENCES = (
    "What time do you open tomorrow?",
    "I would like to change my order.",
    "Please call me back later.",
)


@functools.cache
def spoken(text: str, rate: int = RATE, voice: str = "en-us") -> Pcm:
    """``text`` by espeak-ng at ``rate``, with 0.4 s of silence before and 0.3 s after."""
    return np.concatenate([silence(0.4, rate), espeak(text, rate, voice), silence(0.3, rate)])


@functools.cache
def two_cities_opening() -> Pcm:
    """The first 7.7 s of two_cities.wav (up to the pause after "foolishness"), at 16 kHz."""
    from tests.audio import resample

    audio, rate = read_speech("two_cities")
    audio = resample(audio, rate, RATE)
    search = audio[int(7.0 * RATE) : int(8.6 * RATE)].astype(np.float64) ** 2
    frames = search[: len(search) // 800 * 800].reshape(-1, 800).sum(axis=1)
    cut = int(7.0 * RATE) + int(np.argmin(frames)) * 800 + 400
    return audio[:cut]


def invented_words(reference: str, hypothesis: str, *, similarity: float = 0.6) -> list[str]:
    """Words of ``hypothesis`` that resemble no word of ``reference`` (spelling ratio)."""
    known = normalise(reference)
    return [
        word
        for word in normalise(hypothesis)
        if not any(difflib.SequenceMatcher(a=word, b=k).ratio() >= similarity for k in known)
    ]
