"""QuietTail: how long the audio has been quiet at its end (sans-I/O, exact in samples)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.asr.quiet import BLOCK, HOLD_LIMIT, PAUSE_LIKELY, QuietTail
from pipeline.events import Pcm


def tone(blocks: int, dbfs: float) -> Pcm:
    """A 1 kHz sine ``blocks`` 10 ms blocks long at ``dbfs`` RMS."""
    t = np.arange(blocks * BLOCK) / 16000
    amplitude = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)
    samples: Pcm = np.round(amplitude * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    return samples


def quiet_after_each_block(audio: Pcm, piece: int) -> list[int]:
    """``QuietTail.quiet`` at each block boundary, feeding ``audio`` ``piece`` samples at a
    time."""
    tail = QuietTail()
    seen: dict[int, int] = {}
    for start in range(0, len(audio), piece):
        tail.feed(audio[start : start + piece])
        end = min(start + piece, len(audio))
        seen[end] = tail.quiet
    return [seen[end] for end in range(BLOCK, len(audio) + 1, BLOCK) if end in seen]


def test_the_quiet_run_counts_the_blocks_after_the_speech() -> None:
    tail = QuietTail()
    tail.feed(tone(20, -20))
    assert (tail.quiet, tail.pause_likely) == (0, False)
    tail.feed(np.zeros(PAUSE_LIKELY - BLOCK, np.int16))
    assert (tail.quiet, tail.pause_likely) == (PAUSE_LIKELY - BLOCK, False)
    tail.feed(np.zeros(BLOCK, np.int16))
    assert (tail.quiet, tail.pause_likely) == (PAUSE_LIKELY, True)
    tail.feed(np.zeros(HOLD_LIMIT - PAUSE_LIKELY - BLOCK, np.int16))
    assert tail.pause_likely
    tail.feed(np.zeros(BLOCK, np.int16))  # this long with no pause: the VAD hears speech
    assert (tail.quiet, tail.pause_likely) == (HOLD_LIMIT, False)
    tail.feed(tone(1, -20))  # the caller goes on
    assert (tail.quiet, tail.pause_likely) == (0, False)


@pytest.mark.parametrize(
    ("level", "quiet"),
    [(-20.0, False), (-50.0, False), (-56.0, True), (-80.0, True)],
)
def test_quiet_is_35_db_under_the_loudest_block_or_under_the_floor(
    level: float, quiet: bool
) -> None:
    tail = QuietTail(floor_dbfs=-55.0)
    tail.feed(np.concatenate([tone(10, -20), tone(5, level)]))
    assert (tail.quiet > 0) == quiet


def test_a_soft_voice_is_not_quiet_but_after_a_loud_one_it_is() -> None:
    soft = tone(5, -45)
    tail = QuietTail()
    tail.feed(soft)
    assert tail.quiet == 0
    tail.feed(tone(5, -5))
    tail.feed(soft)  # 40 dB under this utterance's loudest
    assert tail.quiet == 5 * BLOCK
    tail.restart()  # a new utterance is measured against its own speech
    assert tail.quiet == 0
    tail.feed(soft)
    assert tail.quiet == 0


def test_after_the_vads_pause_only_a_loud_block_ends_the_wait() -> None:
    tail = QuietTail()
    tail.feed(np.concatenate([tone(20, -20), np.zeros(PAUSE_LIKELY, np.int16)]))
    tail.paused()
    tail.feed(np.zeros(2 * HOLD_LIMIT, np.int16))
    assert tail.pause_likely
    tail.feed(tone(1, -20))
    tail.feed(np.zeros(HOLD_LIMIT, np.int16))  # a new run: the pause was the last one's
    assert (tail.quiet, tail.pause_likely) == (HOLD_LIMIT, False)


def test_digital_silence_alone_is_quiet() -> None:
    tail = QuietTail()
    tail.feed(np.zeros(4 * BLOCK, np.int16))
    assert tail.quiet == 4 * BLOCK


@pytest.mark.parametrize("piece", [1, 7, 159, 320, 512, 1000])
def test_any_framing_gives_the_same_answers_at_the_same_samples(piece: int) -> None:
    audio = np.concatenate([tone(7, -20), np.zeros(9 * BLOCK, np.int16), tone(3, -30)])
    whole = quiet_after_each_block(audio, BLOCK)
    assert whole == [0] * 7 + [BLOCK * (i + 1) for i in range(9)] + [0] * 3
    every = quiet_after_each_block(audio, 1)
    assert every == whole
    # fed in other pieces, the answer at each block boundary it stops on is the same
    tail = QuietTail()
    for start in range(0, len(audio), piece):
        tail.feed(audio[start : start + piece])
        end = min(start + piece, len(audio))
        expected = every[end // BLOCK - 1] if end >= BLOCK else 0
        assert tail.quiet == expected
