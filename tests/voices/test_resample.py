"""Stream resampling of PCM16 and of speech chunks with their word timings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InvalidAudio
from voices.engine import SpeechChunk, WordTiming
from voices.resample import ChunkResampler, StreamResampler


def tone(seconds: float, rate: int) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2").tobytes()


def resample_in_pieces(pcm: bytes, cuts: list[int], rate_in: int, rate_out: int) -> bytes:
    resampler = StreamResampler(rate_in, rate_out)
    bounds = [0, *sorted(2 * (c // 2) for c in cuts), len(pcm)]
    out = b"".join(resampler.process(pcm[a:b]) for a, b in itertools.pairwise(bounds))
    return out + resampler.flush()


@settings(deadline=None, max_examples=50)
@given(st.lists(st.integers(0, 2 * 22050), max_size=10))
def test_pieces_resample_like_the_whole_to_within_rounding(cuts: list[int]) -> None:
    pcm = tone(1.0, 22050)
    whole = resample_in_pieces(pcm, [], 22050, 16000)
    pieces = resample_in_pieces(pcm, cuts, 22050, 16000)
    assert len(whole) == len(pieces) == 2 * 16000
    difference = np.frombuffer(whole, "<i2").astype(int) - np.frombuffer(pieces, "<i2")
    assert np.abs(difference).max() <= 2  # int16 rounding inside soxr, nothing audible


def test_the_stream_matches_a_one_shot_resample() -> None:
    pcm = tone(0.5, 22050)
    ours = np.frombuffer(resample_in_pieces(pcm, [1000, 3000], 22050, 8000), "<i2")
    reference = soxr.resample(np.frombuffer(pcm, "<i2"), 22050, 8000)
    assert len(ours) == len(reference)
    assert np.max(np.abs(ours.astype(int) - reference.astype(int))) <= 2


def test_the_same_rate_passes_through_and_bad_input_is_refused() -> None:
    resampler = StreamResampler(16000, 16000)
    assert resampler.process(b"\x01\x02") == b"\x01\x02"
    assert resampler.flush() == b""
    with pytest.raises(InvalidAudio):
        resampler.process(b"\x01")
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 16000)


def speech(rate: int) -> list[SpeechChunk]:
    """Two chunks of 'speech' with word timings that tile each chunk."""
    first = SpeechChunk(
        rate, tone(0.4, rate), 0, 0, 9,
        (WordTiming(0, 5, 0, 3000), WordTiming(6, 9, 3000, round(0.4 * rate))),
    )  # fmt: skip
    second = SpeechChunk(
        rate, tone(0.3, rate), first.end_offset, 10, 14,
        (WordTiming(10, 14, first.end_offset, first.end_offset + round(0.3 * rate)),),
    )  # fmt: skip
    return [first, second]


def test_chunks_keep_their_text_and_their_words_tile_them_at_the_new_rate() -> None:
    resampler = ChunkResampler(16000)
    out = [resampler.process(chunk) for chunk in speech(22050)]
    tail = resampler.flush()
    assert tail is not None
    assert tail.words == ()
    assert (tail.text_start, tail.text_end) == (14, 14)
    chunks = [*out, tail]
    position = 0
    for chunk in chunks:
        assert chunk.sample_rate == 16000
        assert chunk.sample_offset == position
        position = chunk.end_offset
    assert position == round(0.7 * 16000)
    first, second = out
    assert [(w.text_start, w.text_end) for w in first.words] == [(0, 5), (6, 9)]
    assert first.words[0].sample_start == 0
    assert first.words[1].sample_start == round(3000 * 16000 / 22050)
    assert first.words[-1].sample_end == first.end_offset
    assert second.words[0].sample_start == second.sample_offset
    assert second.words[-1].sample_end == second.end_offset


def test_a_stream_keeps_one_rate() -> None:
    resampler = ChunkResampler(16000)
    resampler.process(speech(22050)[0])
    with pytest.raises(InvalidAudio, match="24000 Hz"):
        resampler.process(speech(24000)[1])
    assert ChunkResampler(16000).flush() is None
