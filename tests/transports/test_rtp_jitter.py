"""The jitter buffer: reorder, duplicates, late loss, overflow, underrun, SSRC change."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from transports.rtp.jitter import MAX_DROPOUT, JitterBuffer
from transports.rtp.packet import RtpPacket


def packet(sequence: int, ssrc: int = 1) -> RtpPacket:
    return RtpPacket(0, sequence & 0xFFFF, sequence * 160, ssrc, sequence.to_bytes(4, "big"))


def played(buffer: JitterBuffer, ticks: int) -> list[int | None]:
    out: list[int | None] = []
    for _ in range(ticks):
        got = buffer.pop()
        out.append(None if got is None else got.sequence)
    return out


def test_playout_waits_for_depth_then_plays_in_order() -> None:
    buffer = JitterBuffer(depth=3)
    buffer.push(packet(11), 0)
    buffer.push(packet(10), 0)
    assert played(buffer, 1) == [None]  # buffering
    buffer.push(packet(12), 0)
    assert played(buffer, 3) == [10, 11, 12]


def test_a_missing_packet_is_a_lost_slot_j5() -> None:
    buffer = JitterBuffer(depth=2)
    for sequence in (1, 3, 4):
        buffer.push(packet(sequence), 0)
    assert played(buffer, 4) == [1, None, 3, 4]
    assert buffer.stats.lost == 1


def test_a_packet_after_its_slot_is_late_j2_and_a_repeat_is_a_duplicate_j1() -> None:
    buffer = JitterBuffer(depth=2)
    for sequence in (1, 3, 4):
        buffer.push(packet(sequence), 0)
    played(buffer, 3)
    assert buffer.push(packet(2), 0) == "late"
    assert buffer.push(packet(3), 0) == "duplicate"
    assert buffer.push(packet(4), 0) == "duplicate"  # held, then played
    buffer.push(packet(6), 0)
    assert buffer.push(packet(6), 0) == "duplicate"  # held
    assert (buffer.stats.late, buffer.stats.duplicate) == (1, 3)


def test_sequence_numbers_wrap() -> None:
    buffer = JitterBuffer(depth=3)
    for sequence in (65534, 0, 65535, 1):
        buffer.push(packet(sequence), 0)
    assert played(buffer, 4) == [65534, 65535, 0, 1]
    assert buffer.stats.lost == 0


def test_overflow_drops_the_oldest_j4() -> None:
    buffer = JitterBuffer(depth=2, capacity=3)
    events = [buffer.push(packet(sequence), 0) for sequence in range(1, 6)]
    assert events == [None, None, None, "overflow", "overflow"]
    assert played(buffer, 3) == [3, 4, 5]


def test_an_underrun_refills_before_playing_again_j6() -> None:
    buffer = JitterBuffer(depth=2)
    buffer.push(packet(1), 0)
    buffer.push(packet(2), 0)
    assert played(buffer, 3) == [1, 2, None]
    buffer.push(packet(3), 0)
    assert played(buffer, 1) == [None]  # refilling
    buffer.push(packet(4), 0)
    assert played(buffer, 2) == [3, 4]
    assert buffer.stats.underrun == 1


def test_a_new_ssrc_restarts_the_stream_j3() -> None:
    buffer = JitterBuffer(depth=1)
    buffer.push(packet(100), 0)
    assert played(buffer, 1) == [100]
    assert buffer.push(packet(5, ssrc=2), 0) == "restart"  # would be late for the old one
    assert played(buffer, 1) == [5]
    assert (buffer.ssrc, buffer.stats.restart) == (2, 1)


def test_a_huge_jump_is_a_restart_not_loss_j3() -> None:
    buffer = JitterBuffer(depth=1)
    buffer.push(packet(10), 0)
    assert buffer.push(packet(10 + MAX_DROPOUT + 1), 0) == "restart"
    assert played(buffer, 1) == [10 + MAX_DROPOUT + 1]
    assert buffer.stats.lost == 0


def test_jitter_is_estimated_from_arrival_times() -> None:
    steady = JitterBuffer()
    for sequence in range(20):
        steady.push(packet(sequence), sequence * 160 + 5000)
    assert steady.jitter == 0
    shaky = JitterBuffer(capacity=30)
    for sequence in range(20):
        shaky.push(packet(sequence), sequence * 160 + (80 if sequence % 2 else 0))
    assert 40 < shaky.jitter <= 80


@given(st.permutations(list(range(12))), st.integers(0, 0xFFFF))
def test_any_order_within_the_buffer_plays_in_sequence(order: list[int], start: int) -> None:
    buffer = JitterBuffer(depth=12, capacity=12)
    for offset in order:
        buffer.push(packet(start + offset), 0)
    assert played(buffer, 12) == [(start + i) & 0xFFFF for i in range(12)]


@given(st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=120))
def test_never_more_than_capacity_and_never_out_of_order(steps: list[tuple[int, bool]]) -> None:
    buffer = JitterBuffer(depth=3, capacity=6)
    last = -1
    for sequence, pop in steps:
        buffer.push(packet(sequence), 0)
        assert len(buffer) <= 6
        if pop and (got := buffer.pop()) is not None:
            assert got.sequence > last
            last = got.sequence
