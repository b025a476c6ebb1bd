"""SSML and emotion through the real Piper voice, checked by measuring and hearing the audio.

Nothing here trusts a flag: pauses are measured as silence in the samples, rate as duration,
pitch as the median F0 (YIN, :func:`voices.dsp.median_f0`), volume as RMS, and words by
transcribing the audio with the embedded Whisper model.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel

from voices import dsp
from voices.engine import Emotion, SpeechPlan, Style
from voices.piper_engine import PiperEngine
from voices.ssml import parse_ssml, plan_from_text

from .listening import Rendered, hear, render, similarity, skeleton

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ssml.md"
SENTENCE = "Thank you for calling the city library. How can I help you today?"


def ssml(body: str) -> SpeechPlan:
    return parse_ssml(f"<speak>{body}</speak>")


def silent_gaps(samples: np.ndarray, relative: float = 0.01) -> list[int]:
    """Lengths in samples of the stretches quieter than ``relative`` of the peak, between sounds."""
    loud = np.flatnonzero(np.abs(samples.astype(np.float64)) > relative * np.abs(samples).max())
    return [int(gap) - 1 for gap in np.diff(loud) if gap > 1]


def speech_seconds(audio: Rendered) -> float:
    x = audio.samples.astype(np.float64)
    start, end = dsp.speech_bounds(x, 0.01 * np.abs(x).max())
    return (end - start) / audio.sample_rate


@pytest.mark.parametrize("milliseconds", [250, 500, 1200])
def test_a_break_inserts_its_time_as_silence(piper_engine: PiperEngine, milliseconds: int) -> None:
    audio = render(piper_engine, ssml(f'Hello there <break time="{milliseconds}ms"/> my friend.'))
    longest = max(silent_gaps(audio.samples)) * 1000 / audio.sample_rate
    assert longest == pytest.approx(milliseconds, abs=20)


def test_without_a_break_the_words_run_on(piper_engine: PiperEngine) -> None:
    audio = render(piper_engine, ssml('Hello there <break time="0ms"/> my friend.'))
    assert max(silent_gaps(audio.samples)) * 1000 / audio.sample_rate < 100


def test_slow_rate_lengthens_the_utterance_and_fast_shortens_it(
    piper_engine: PiperEngine,
) -> None:
    seconds = {
        rate: speech_seconds(
            render(piper_engine, ssml(f'<prosody rate="{rate}">{SENTENCE}</prosody>'))
        )
        for rate in ("x-slow", "slow", "medium", "fast")
    }
    assert seconds["x-slow"] > seconds["slow"] > 1.08 * seconds["medium"]
    assert seconds["fast"] < 0.92 * seconds["medium"]


def test_a_higher_pitch_raises_the_measured_f0_and_stays_intelligible(
    piper_engine: PiperEngine, whisper: WhisperModel
) -> None:
    audio = {
        pitch: render(piper_engine, ssml(f'<prosody pitch="{pitch}">{SENTENCE}</prosody>'))
        for pitch in ("default", "+20%", "-20%")
    }
    f0 = {pitch: dsp.median_f0(a.samples, a.sample_rate) for pitch, a in audio.items()}
    assert f0["+20%"] / f0["default"] == pytest.approx(1.2, abs=0.06)
    assert f0["-20%"] / f0["default"] == pytest.approx(0.8, abs=0.06)
    assert audio["+20%"].seconds == pytest.approx(audio["default"].seconds, rel=0.1)
    heard = hear(whisper, audio["+20%"].samples, audio["+20%"].sample_rate)
    assert similarity(SENTENCE, heard) > 0.9, heard


def test_loud_raises_the_rms_and_soft_lowers_it(piper_engine: PiperEngine) -> None:
    rms = {
        volume: dsp.rms(
            render(piper_engine, ssml(f'<prosody volume="{volume}">{SENTENCE}</prosody>')).samples
        )
        for volume in ("soft", "medium", "loud")
    }
    assert rms["loud"] > 1.25 * rms["medium"]
    assert rms["soft"] < 0.6 * rms["medium"]


SAY_AS = [
    (
        'The total is <say-as interpret-as="cardinal">1234</say-as>.',
        "one thousand two hundred thirty-four",
    ),
    ('You came <say-as interpret-as="ordinal">21</say-as>.', "twenty-first"),
    ('Your code is <say-as interpret-as="digits">4096</say-as>.', "four zero nine six"),
    ('The code is <say-as interpret-as="characters">KLM</say-as>.', "K L M"),
    (
        'It is due on <say-as interpret-as="date" format="ymd">2024-03-05</say-as>.',
        "March fifth, twenty twenty-four",
    ),
    (
        'Dinner is on <say-as interpret-as="date" format="dmy">25/12/1999</say-as>.',
        "December twenty-fifth, nineteen ninety-nine",
    ),
    ('Meet me at <say-as interpret-as="time">9:30 pm</say-as>.', "nine thirty p.m."),
    (
        'Please call <say-as interpret-as="telephone">555-0123</say-as>.',
        "five five five zero one two three",
    ),
    (
        'That costs <say-as interpret-as="currency">$42.50</say-as>.',
        "forty-two dollars and fifty cents",
    ),
]


@pytest.mark.parametrize(("body", "reading"), SAY_AS)
def test_say_as_is_read_as_asked(
    piper_engine: PiperEngine, whisper: WhisperModel, body: str, reading: str
) -> None:
    plan = ssml(body)
    audio = render(piper_engine, plan)
    heard = hear(whisper, audio.samples, audio.sample_rate)
    assert skeleton(reading) in skeleton(heard), (plan.text, heard)


def test_a_phoneme_is_spoken_as_written(piper_engine: PiperEngine, whisper: WhisperModel) -> None:
    dog = "dˈɔɡ"  # noqa: RUF001 (IPA letters, not look-alikes)
    plan = ssml(f'My favourite animal is the <phoneme alphabet="ipa" ph="{dog}">cat</phoneme>.')
    assert plan.text == "My favourite animal is the cat."
    audio = render(piper_engine, plan)
    heard = hear(whisper, audio.samples, audio.sample_rate).lower()
    assert "dog" in heard, heard
    assert "cat" not in heard, heard


def test_marks_fire_in_order_where_their_words_are_heard(
    piper_engine: PiperEngine, whisper: WhisperModel
) -> None:
    sentences = ["Good morning, everyone.", "Please take a seat.", "The show begins now."]
    plan = ssml(
        f'{sentences[0]} <mark name="first"/>{sentences[1]} '
        f'<mark name="second"/><break time="300ms"/>{sentences[2]}<mark name="end"/>'
    )
    audio = render(piper_engine, plan)
    marks = [(name, c.sample_offset) for c in audio.chunks for name in c.marks]
    assert [name for name, _ in marks] == ["first", "second", "end"]
    positions = dict(marks)
    x = audio.samples
    assert positions["first"] < positions["second"] < positions["end"] == len(x)
    assert audio.chunks[-1].num_samples == 0  # a mark at the very end has an empty chunk
    rate = audio.sample_rate
    pause = x[positions["second"] : positions["second"] + 300 * rate // 1000]
    assert len(pause) == 300 * rate // 1000
    assert not pause.any()
    # silence just before the first mark, sound (above -40 dB) within 10 ms after it
    peak = np.abs(x).max()
    before = x[positions["first"] - rate // 20 : positions["first"]]
    assert dsp.rms(before) < 0.02 * peak
    after = np.abs(x[positions["first"] :]) > 0.01 * peak
    assert int(np.argmax(after)) < rate // 100
    # each stretch says its own words
    pieces = [(0, positions["first"]), (positions["first"], positions["second"])]
    pieces.append((positions["second"], len(x)))
    heard = [hear(whisper, x[a:b], rate) for a, b in pieces]
    for i, text in enumerate(heard):  # each piece sounds most like its own sentence
        scores = [similarity(sentence, text) for sentence in sentences]
        assert scores[i] > 0.8, heard
        assert scores[i] == max(scores), heard


EMOTIONS: tuple[Emotion, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "excited",
    "serious",
    "whisper",
)


def test_emotion_presets_measurably_change_the_prosody(
    piper_engine: PiperEngine, whisper: WhisperModel
) -> None:
    audio = {e: render(piper_engine, plan_from_text(SENTENCE, style=Style(e))) for e in EMOTIONS}
    f0 = {e: dsp.median_f0(a.samples, a.sample_rate) for e, a in audio.items()}
    rms = {e: dsp.rms(a.samples) for e, a in audio.items()}
    seconds = {e: speech_seconds(a) for e, a in audio.items()}
    voiced = {
        e: float(np.mean(~np.isnan(dsp.f0_track(a.samples, a.sample_rate))))
        for e, a in audio.items()
    }
    assert f0["happy"] > 1.05 * f0["neutral"]
    assert f0["excited"] > 1.1 * f0["neutral"]
    assert f0["sad"] < 0.97 * f0["neutral"]
    assert f0["serious"] < 0.97 * f0["neutral"]
    assert seconds["sad"] > 1.04 * seconds["neutral"]
    assert seconds["excited"] < 0.96 * seconds["neutral"]
    assert rms["angry"] > 1.15 * rms["neutral"]
    assert rms["sad"] < 0.85 * rms["neutral"]
    assert voiced["whisper"] < 0.2 * voiced["neutral"]  # no voicing left: a whisper
    heard = hear(whisper, audio["whisper"].samples, audio["whisper"].sample_rate)
    assert similarity(SENTENCE, heard) > 0.9, heard


def test_inline_tags_change_the_style_mid_reply(piper_engine: PiperEngine) -> None:
    plan = plan_from_text("[whisper] This is a secret. [/] This is not.")
    assert plan.text == "This is a secret. This is not."
    audio = render(piper_engine, plan)
    secret, plain = (c for c in audio.chunks if c.words)
    assert dsp.rms(np.frombuffer(secret.pcm, "<i2")) < 0.7 * dsp.rms(
        np.frombuffer(plain.pcm, "<i2")
    )


def examples() -> list[str]:
    """The SSML examples of docs/ssml.md (fenced ``xml`` blocks that are speak documents)."""
    return re.findall(r"```xml\n(<speak.*?</speak>)\n```", DOCS.read_text(encoding="utf-8"), re.S)


def test_the_docs_have_examples() -> None:
    assert len(examples()) >= 5


@pytest.mark.parametrize("example", examples(), ids=lambda e: e[7:40])
def test_every_ssml_example_in_the_docs_is_heard_as_written(
    piper_engine: PiperEngine, whisper: WhisperModel, example: str
) -> None:
    plan = parse_ssml(example)
    audio = render(piper_engine, plan)
    heard = hear(whisper, audio.samples, audio.sample_rate)
    assert similarity(plan.text, heard) > 0.85, (plan.text, heard)
