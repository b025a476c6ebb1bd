"""The echo detector (pipeline/echo.py) on real speech.

The bot's reference is espeak-ng speech; echo is that reference delayed, attenuated, band-passed
to the telephone band (a windowed-sinc FIR) with noise; callers are another espeak voice and
real read speech (the moonshine-voice recordings). Reference and input are pushed in step, 20 ms
at a time, as a session does.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.echo import EchoConfig, EchoDetector, EchoVerdict
from pipeline.events import PIPELINE_RATE as RATE
from pipeline.events import Pcm
from tests.audio import espeak, noise, read_speech, resample

FRAME = 320  # 20 ms
Signal = npt.NDArray[np.float64]

BOT = (
    "We are open every day from nine in the morning until late at night. "
    "On weekends we also serve brunch, with pancakes, eggs and fresh juice."
)


def level(x: Pcm | Signal, dbfs: float) -> Signal:
    """``x`` scaled so that its RMS (over non-zero samples) is ``dbfs``."""
    data = x.astype(np.float64)
    rms = float(np.sqrt(np.mean(data[np.abs(data) > 0] ** 2)))
    return data * (10 ** (dbfs / 20) * 32768 / rms)


def telephone(x: Signal, taps: int = 101) -> Signal:
    n = np.arange(taps) - (taps - 1) / 2

    def lowpass(cutoff: float) -> Signal:
        h: Signal = np.sinc(2 * cutoff / RATE * n) * 2 * cutoff / RATE
        return h

    out: Signal = np.convolve(x, (lowpass(3400) - lowpass(300)) * np.hamming(taps), mode="same")
    return out


def pcm(x: Signal) -> Pcm:
    out: Pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return out


@functools.cache
def reference() -> Signal:
    return level(espeak(BOT), -20)


def fit(x: Signal) -> Signal:
    n = len(reference())
    return np.concatenate([x, np.zeros(max(0, n - len(x)))])[:n]


def background() -> Signal:
    return noise(len(reference()) / RATE, level=0.001, seed=3).astype(np.float64)  # -60 dBFS


def echo(delay_ms: int, attenuation_db: float) -> Signal:
    delay = delay_ms * RATE // 1000
    delayed = np.concatenate([np.zeros(delay), reference()])[: len(reference())]
    return telephone(delayed) * 10 ** (attenuation_db / 20)


@functools.cache
def caller(name: str) -> Signal:
    """A caller's speech at -20 dBFS, leading silence cut, as long as the reference."""
    if name == "espeak-gb":
        text = "Sorry, can I book a table for two people tonight, by the window? And Sunday too."
        speech = espeak(text, voice="en-gb+f3", wpm=150)
    else:
        samples, rate = read_speech(name)
        speech = resample(samples, rate, RATE)
    loud = level(speech, -20)
    power = np.convolve(loud**2, np.ones(160) / 160, mode="same")
    start = int(np.argmax(10 * np.log10(power / 32768**2 + 1e-12) > -28))
    return fit(loud[start:])


CALLERS = ["espeak-gb", "beckett", "two_cities"]


def run(
    ref: Signal, audio: Signal, detector: EchoDetector | None = None
) -> tuple[list[EchoVerdict], list[EchoVerdict]]:
    """Every 20 ms chunk's verdict after it, and the changes the detector returned."""
    detector = detector or EchoDetector()
    after, changes = [], []
    for start in range(0, len(audio), FRAME):
        detector.push_reference(pcm(ref[start : start + FRAME]), RATE, start)
        changes += detector.push_input(pcm(audio[start : start + FRAME]), start)
        after.append(detector.verdict)
    return after, changes


def active(x: Signal) -> npt.NDArray[np.bool_]:
    """Chunks with signal above -50 dBFS in them or the 200 ms before."""
    power = np.array([np.mean(x[s : s + FRAME] ** 2) for s in range(0, len(x), FRAME)])
    db = 10 * np.log10(power / 32768**2 + 1e-12)
    return np.array([db[max(0, i - 10) : i + 1].max() > -50 for i in range(len(db))])


# -- echo ----------------------------------------------------------------------------------


@pytest.mark.parametrize("delay_ms", [40, 145, 150, 400])
@pytest.mark.parametrize("attenuation_db", [-6, -12, -20])
def test_the_bots_voice_coming_back_delayed_and_filtered_is_echo(
    delay_ms: int, attenuation_db: int
) -> None:
    audio = echo(delay_ms, attenuation_db)
    verdicts, _ = run(reference(), audio + background())
    heard = active(audio)
    heard[:25] = False  # the first 500 ms: the window fills and the score settles
    likely = np.array([v.likely for v in verdicts])[heard]
    assert likely.mean() >= 0.85
    delays = [v.delay for v, h in zip(verdicts, heard, strict=True) if h and v.likely]
    assert abs(np.median(delays) - delay_ms * RATE // 1000) <= 160  # within one frame


@pytest.mark.parametrize("name", CALLERS)
def test_a_caller_talking_over_the_bot_on_a_clean_line_is_never_echo(name: str) -> None:
    verdicts, changes = run(reference(), caller(name) + background())
    assert changes == []
    assert not any(v.likely for v in verdicts)


@pytest.mark.parametrize("name", CALLERS)
@pytest.mark.parametrize("attenuation_db", [-20, -12])
def test_a_caller_speaking_over_faint_echo_is_not_echo(name: str, attenuation_db: int) -> None:
    """Echo first (likely), then the caller starts at 2 s: by the time a barge-in is decided
    (300 ms of speech) the verdict is "not echo"."""
    onset = 2 * RATE
    speech = np.concatenate([np.zeros(onset), caller(name)])[: len(reference())]
    verdicts, _ = run(reference(), speech + echo(150, attenuation_db) + background())
    chunk = onset // FRAME
    assert all(v.likely for v in verdicts[chunk - 25 : chunk])  # the echo before the caller
    assert not verdicts[chunk + 300 // 20].likely


def test_silence_is_not_echo() -> None:
    verdicts, _ = run(reference(), np.zeros(len(reference())))
    assert not any(v.likely for v in verdicts)


def test_noise_alone_is_not_echo() -> None:
    verdicts, _ = run(reference(), background())
    assert not any(v.likely for v in verdicts)


def test_without_a_reference_nothing_is_echo() -> None:
    verdicts, _ = run(np.zeros(len(reference())), echo(150, -6) + background())
    assert not any(v.likely for v in verdicts)


def test_echo_beyond_the_searched_delay_is_not_found() -> None:
    detector = EchoDetector(EchoConfig(max_delay_ms=100))
    verdicts, _ = run(reference(), echo(400, -6) + background(), detector)
    assert np.mean([v.likely for v in verdicts]) < 0.05


def test_the_reference_rate_does_not_matter() -> None:
    """A 48 kHz reference (WebRTC) or an 8 kHz one (telephony): the same echo is found."""
    ref16 = reference()
    audio = echo(150, -12) + background()
    for rate in (8000, 48000):
        ref = resample(pcm(ref16), RATE, rate).astype(np.float64)
        detector = EchoDetector()
        verdicts = []
        step = FRAME * rate // RATE
        for i, start in enumerate(range(0, len(audio), FRAME)):
            detector.push_reference(pcm(ref[i * step : (i + 1) * step]), rate, start)
            detector.push_input(pcm(audio[start : start + FRAME]), start)
            verdicts.append(detector.likely)
        heard = active(echo(150, -12))
        heard[:25] = False
        assert np.mean(np.array(verdicts)[heard]) >= 0.85


def jittered(count: int, jitter_ms: float, seed: int = 0) -> list[int]:
    """Where ``count`` 20 ms chunks are stamped when each is sent up to ``jitter_ms`` off its
    schedule (the input clock never goes back), as on a live call."""
    rng = np.random.default_rng(seed)
    nominal = np.arange(count) * FRAME + rng.uniform(-jitter_ms, jitter_ms, count) * RATE / 1000
    return [int(t) for t in np.maximum.accumulate(np.maximum(nominal, 0).astype(np.int64))]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_reference_sent_with_jitter_is_placed_as_the_far_side_plays_it(seed: int) -> None:
    """Chunks sent up to 10 ms off schedule are placed back to back: the echo still lines up."""
    ref, audio = reference(), echo(150, -12) + background()
    detector = EchoDetector()
    verdicts = []
    for i, (start, at) in enumerate(
        zip(range(0, len(audio), FRAME), jittered(len(audio) // FRAME + 1, 10, seed), strict=False)
    ):
        detector.push_reference(pcm(ref[start : start + FRAME]), RATE, at, restart=i == 0)
        detector.push_input(pcm(audio[start : start + FRAME]), start)
        verdicts.append(detector.likely)
    heard = active(echo(150, -12))
    heard[:25] = False
    assert np.mean(np.array(verdicts)[heard]) >= 0.9


def second_reply(restart: bool) -> list[EchoVerdict]:
    """A first reply sent 1 s ahead of playing and cut at 0.5 s; the second from 0.5 s on, its
    echo 150 ms later."""
    ref, cut = reference(), RATE // 2
    detector = EchoDetector()
    detector.push_reference(pcm(ref[:RATE]), RATE, 0)
    second = np.concatenate([np.zeros(cut), ref])[: len(ref)]
    audio = np.concatenate([np.zeros(150 * RATE // 1000), second])[: len(ref)]
    audio = telephone(audio) * 10 ** (-12 / 20) + background()
    verdicts = []
    for start in range(0, len(audio), FRAME):
        if start >= cut:
            chunk = pcm(second[start : start + FRAME])
            detector.push_reference(chunk, RATE, start, restart=restart and start == cut)
        detector.push_input(pcm(audio[start : start + FRAME]), start)
        verdicts.append(detector.verdict)
    return verdicts[cut // FRAME + 25 :]


def test_a_restarted_reference_is_placed_where_it_was_sent() -> None:
    """After ``restart`` (the player's buffer cleared) a chunk goes at its stamp, not after what
    was sent before; without it, the new reply would be placed after the old one's end."""
    restarted = second_reply(restart=True)
    assert np.mean([v.likely for v in restarted]) >= 0.85
    assert np.median([v.delay for v in restarted if v.likely]) == 150 * RATE // 1000
    assert np.mean([v.likely for v in second_reply(restart=False)]) < 0.1


def test_the_echo_is_over_when_its_reference_is() -> None:
    """The bot stops at 3 s; its echo (150 ms later) is over by 3 s + 150 + tail_ms, and the
    verdict that turns then says so."""
    stop = 3 * RATE
    ref = reference()[:stop]  # sent until 3 s, then nothing
    audio = np.concatenate([np.zeros(150 * RATE // 1000), ref, np.zeros(RATE)])
    verdicts, changes = run(ref, telephone(audio) * 10 ** (-12 / 20) + background()[: len(audio)])
    assert verdicts[stop // FRAME - 5].likely
    over = [v for v in changes if not v.likely and v.sample > stop]
    assert over[0].ended
    assert stop + 150 * RATE // 1000 < over[0].sample <= stop + (150 + 100 + 20) * RATE // 1000
    assert not any(v.likely for v in verdicts[over[0].sample // FRAME :])


def test_bad_input_is_refused() -> None:
    detector = EchoDetector()
    with pytest.raises(ValueError, match="even"):
        detector.push_input(b"\x00", 0)
    with pytest.raises(ValueError, match="rate"):
        detector.push_reference(b"\x00\x00", 0, 0)
    with pytest.raises(ValueError, match="window_ms"):
        EchoConfig(window_ms=10)


# -- re-chunking ---------------------------------------------------------------------------


@functools.cache
def short_case() -> tuple[Pcm, Pcm]:
    """3 s: echo of the reference, then a caller over it."""
    n = 3 * RATE
    speech = np.concatenate([np.zeros(RATE + RATE // 2), caller("beckett")])[:n]
    audio = echo(150, -12)[:n] + speech + background()[:n]
    return pcm(reference()[:n]), pcm(audio)


def verdicts_chunked(sizes: list[int]) -> list[EchoVerdict]:
    ref, audio = short_case()
    detector = EchoDetector()
    detector.push_reference(ref, RATE, 0)
    changes: list[EchoVerdict] = []
    start, i = 0, 0
    while start < len(audio):
        size = sizes[i % len(sizes)]
        changes += detector.push_input(audio[start : start + size], start)
        start += size
        i += 1
    return changes


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2000), min_size=1, max_size=8))
def test_the_verdicts_do_not_depend_on_how_the_input_is_chunked(sizes: list[int]) -> None:
    whole = verdicts_chunked([len(short_case()[1])])
    assert whole  # echo comes and goes: there are verdicts to compare
    assert verdicts_chunked(sizes) == whole


def test_a_gap_in_the_input_counts_as_silence() -> None:
    ref, audio = short_case()
    gapped = audio.copy()
    gapped[RATE : RATE + 3200] = 0
    with_gap = EchoDetector()
    with_gap.push_reference(ref, RATE, 0)
    changes = with_gap.push_input(audio[:RATE], 0) + with_gap.push_input(
        audio[RATE + 3200 :], RATE + 3200
    )
    zeros = EchoDetector()
    zeros.push_reference(ref, RATE, 0)
    assert changes == zeros.push_input(gapped, 0)
