"""The stereo recording's timeline (agent/records/recording_mix.py), rule by rule (M1-M4)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from agent.records.recording_mix import LEFT, RIGHT, StereoMix


def pcm(*values: int) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def frames(data: bytes) -> list[tuple[int, int]]:
    pairs = np.frombuffer(data, dtype="<i2").reshape(-1, 2)
    return [(int(left), int(right)) for left, right in pairs]


def test_m1_a_chunk_due_within_the_slack_follows_the_previous_one() -> None:
    mix = StereoMix(8, slack=2, hold=0)
    assert mix.place(LEFT, 0, pcm(1, 2)) == 0
    assert mix.place(LEFT, 4, pcm(3, 4)) == 2  # 2 late: jitter, no gap
    assert mix.place(LEFT, 1, pcm(5)) == 4  # a burst: after, never over, the last
    assert frames(mix.take(final=True)) == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]


def test_m2_a_chunk_due_later_goes_where_it_is_due() -> None:
    mix = StereoMix(8, slack=2, hold=0)
    assert mix.place(LEFT, 1, pcm(1)) == 1  # the first: where it is due, slack or not
    mix = StereoMix(8, slack=2, hold=0)
    mix.place(LEFT, 0, pcm(1))
    assert mix.place(LEFT, 5, pcm(2)) == 5
    assert mix.place(RIGHT, 4, pcm(7, 7)) == 4  # each side has its own end
    assert frames(mix.take(final=True)) == [(1, 0), (0, 0), (0, 0), (0, 0), (0, 7), (2, 7)]


def test_m3_a_cut_silences_the_side_from_there_on() -> None:
    mix = StereoMix(8, slack=0, hold=0)
    mix.place(RIGHT, 0, pcm(1, 2, 3, 4))
    mix.cut(RIGHT, 2)
    assert mix.end_of(RIGHT) == 2
    mix.cut(RIGHT, 3)  # after the end: nothing more to cut
    assert mix.place(RIGHT, 3, pcm(9)) == 3  # the next reply goes where it is due
    assert frames(mix.take(final=True)) == [(0, 1), (0, 2), (0, 0), (0, 9)]
    mix = StereoMix(8, slack=4, hold=0)
    mix.place(RIGHT, 0, pcm(1, 2, 3, 4))
    mix.cut(RIGHT, 2)
    assert mix.place(RIGHT, 5, pcm(9)) == 5  # within the slack, but no stream to follow


def test_m4_only_what_is_older_than_the_hold_is_taken_and_nothing_reaches_back_past_it() -> None:
    mix = StereoMix(8, slack=0, hold=2)
    mix.place(LEFT, 0, pcm(1, 2, 3, 4, 5))
    assert frames(mix.take()) == [(1, 0), (2, 0), (3, 0)]
    assert mix.taken == 3
    mix.cut(LEFT, 1)  # reaches back past what was taken: cut from there
    assert mix.place(RIGHT, 0, pcm(8)) == 3  # moved up to what is still open
    assert frames(mix.take(final=True)) == [(0, 8), (0, 0)]


@given(
    chunks=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    jitter=st.lists(st.integers(0, 5), min_size=30, max_size=30),
)
def test_a_stream_with_jitter_within_the_slack_comes_out_as_it_went_in(
    chunks: list[int], jitter: list[int]
) -> None:
    """The same stream, cut in any chunks arriving up to the slack late, lays out whole."""
    stream = np.arange(1, sum(chunks) + 1, dtype="<i2")
    mix = StereoMix(8, slack=5, hold=7)
    taken, position = bytearray(), 0
    for size, late in zip(chunks, jitter, strict=False):
        due = 100 + position + (late if position else 0)
        mix.place(RIGHT, due, stream[position : position + size].tobytes())
        position += size
        taken += mix.take()
    taken += mix.take(final=True)
    right = np.frombuffer(bytes(taken), dtype="<i2").reshape(-1, 2)[:, 1]
    assert right[:100].tolist() == [0] * 100
    assert right[100:].tolist() == stream.tolist()
