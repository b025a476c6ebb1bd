"""RFC 4733 telephone events: a digit's packets, and digits from packets however they arrive."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transports.rtp.dtmf import Digit, DtmfReceiver, EventPayload, digit_packets
from transports.rtp.packet import RtpPacket


def test_an_event_payload_is_four_bytes_as_section_2_3_lays_them_out() -> None:
    assert bytes(EventPayload(9, True, 10, 1600)) == bytes.fromhex("098a0640")
    assert EventPayload.parse(bytes.fromhex("098a0640")) == EventPayload(9, True, 10, 1600)
    assert EventPayload.parse(b"\x09") is None


def test_a_digit_is_growing_updates_then_three_ends() -> None:
    packets = digit_packets("#", duration=640, interval=160)
    parsed = [(marker, EventPayload.parse(payload)) for marker, payload in packets]
    assert parsed == [
        (True, EventPayload(11, False, 10, 160)),
        (False, EventPayload(11, False, 10, 320)),
        (False, EventPayload(11, False, 10, 480)),
        (False, EventPayload(11, True, 10, 640)),
        (False, EventPayload(11, True, 10, 640)),
        (False, EventPayload(11, True, 10, 640)),
    ]


def test_a_short_digit_starts_with_its_end() -> None:
    assert [m for m, _ in digit_packets("1", duration=100)] == [True, False, False]


@pytest.mark.parametrize("digit", ["", "12", "x", "E"])
def test_only_dtmf_digits_can_be_sent(digit: str) -> None:
    with pytest.raises(ValueError, match="DTMF"):
        digit_packets(digit)


def rtp(timestamp: int, payload: bytes, sequence: int = 0) -> RtpPacket:
    return RtpPacket(101, sequence, timestamp, 1, payload)


def sent(digits: str, start: int = 8000) -> list[RtpPacket]:
    out: list[RtpPacket] = []
    for index, digit in enumerate(digits):
        for _, payload in digit_packets(digit):
            out.append(rtp(start + index * 4000, payload, len(out)))
    return out


def test_each_digit_is_reported_once_at_its_first_end_d1_d2() -> None:
    receiver = DtmfReceiver()
    got = [d for packet in sent("159*") for d in receiver.receive(packet)]
    assert got == [
        Digit("1", 8000, 800),
        Digit("5", 12000, 800),
        Digit("9", 16000, 800),
        Digit("*", 20000, 800),
    ]


def test_a_digit_whose_ends_were_lost_is_reported_when_the_next_starts_d3() -> None:
    packets = [p for p in sent("12") if not (p.timestamp == 8000 and p.payload[1] & 0x80)]
    receiver = DtmfReceiver()
    got = [d for packet in packets for d in receiver.receive(packet)]
    assert got == [Digit("1", 8000, 640), Digit("2", 12000, 800)]


def test_a_digit_whose_ends_were_lost_is_reported_by_expire_d4() -> None:
    receiver = DtmfReceiver(timeout=8000)
    for packet in sent("7")[:2]:
        assert receiver.receive(packet) == []
    assert receiver.expire(8000 + 320 + 7999) == []
    assert receiver.expire(8000 + 320 + 8000) == [Digit("7", 8000, 320)]
    assert receiver.expire(99999) == []


def test_non_dtmf_events_and_short_payloads_are_dropped_d5() -> None:
    receiver = DtmfReceiver()
    assert receiver.receive(rtp(0, bytes(EventPayload(16, True, 10, 800)))) == []
    assert receiver.receive(rtp(0, b"\x01")) == []
    assert receiver.dropped == 2


@given(st.text("0123456789*#ABCD", min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_digits_survive_reordering_within_a_digit_and_duplicates(
    digits: str, rng: random.Random
) -> None:
    packets = sent(digits)
    shuffled: list[RtpPacket] = []
    for index in range(len(digits)):
        own = [p for p in packets if p.timestamp == 8000 + index * 4000]
        own += rng.sample(own, 2)  # duplicates
        rng.shuffle(own)
        shuffled += own
    receiver = DtmfReceiver()
    got = [d for packet in shuffled for d in receiver.receive(packet)]
    got += receiver.expire(10**9)
    assert "".join(d.digit for d in got) == digits
