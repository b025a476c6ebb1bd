"""The agent keys digits on a live :class:`RtpStream` (rule T8b): after the bot audio queued
before them, each digit's RFC 4733 packets (three end packets), a quiet gap between digits,
and bot audio queued meanwhile waits for the last one. A phone's receiver
(:class:`~transports.rtp.dtmf.DtmfReceiver`) reads them back as the digits keyed."""

from __future__ import annotations

import pytest

from transports.g711 import pcm16_to_ulaw
from transports.rtp.dtmf import DtmfReceiver, EventPayload
from transports.rtp.packet import RtpError, RtpPacket, parse_rtp
from transports.rtp.stream import DIGIT_GAP_SAMPLES, DIGIT_SAMPLES, FRAME_SAMPLES, RtpStream

TONE = (b"\x00\x10\x00\xf0" * (FRAME_SAMPLES // 2))[: 2 * FRAME_SAMPLES]
QUIET = b"\xff" * FRAME_SAMPLES  # μ-law zero: comfort silence
EVENT = 101
#: ticks of one digit: its updates, then its three end packets
DIGIT_TICKS = DIGIT_SAMPLES // FRAME_SAMPLES - 1 + 3
GAP_TICKS = DIGIT_GAP_SAMPLES // FRAME_SAMPLES


def leg() -> RtpStream:
    return RtpStream(0, remote=("192.0.2.1", 5004), ssrc=77, timestamp=1000, dtmf=EVENT)


def ticks(stream: RtpStream, count: int) -> list[RtpPacket]:
    out = []
    for _ in range(count):
        data = stream.tick()[1]
        assert data is not None
        packet = parse_rtp(data)
        assert not isinstance(packet, RtpError), packet
        out.append(packet)
    return out


def kinds(packets: list[RtpPacket]) -> str:
    """One letter a packet: ``a`` bot audio, ``q`` quiet, ``e`` a telephone event."""
    return "".join(
        "e" if p.payload_type == EVENT else "q" if p.payload == QUIET else "a" for p in packets
    )


def keyed(packets: list[RtpPacket]) -> str:
    receiver = DtmfReceiver()
    return "".join(d.digit for p in packets if p.payload_type == EVENT for d in receiver.receive(p))


def test_digits_follow_the_audio_queued_before_them_and_are_read_back_as_keyed() -> None:
    stream = leg()
    stream.send_audio(TONE * 3)
    stream.send_digits("1#")
    packets = ticks(stream, 3 + 2 * (DIGIT_TICKS + GAP_TICKS) + 1)
    digit, gap = "e" * DIGIT_TICKS, "q" * GAP_TICKS
    assert kinds(packets) == "aaa" + digit + gap + digit + gap + "q"
    assert keyed(packets) == "1#"
    first, second = packets[3], packets[3 + DIGIT_TICKS + GAP_TICKS]
    assert first.marker  # each digit starts an event of its own
    assert second.marker
    assert second.timestamp - first.timestamp == (DIGIT_TICKS + GAP_TICKS) * FRAME_SAMPLES
    ends = [EventPayload.parse(p.payload) for p in packets[3 : 3 + DIGIT_TICKS]]
    assert [(e.end, e.duration) for e in ends if e][-3:] == [(True, DIGIT_SAMPLES)] * 3


def test_bot_audio_queued_while_digits_play_waits_for_the_last() -> None:
    stream = leg()
    stream.send_digits("5")
    stream.send_audio(TONE * 2)  # a next reply, straight away
    packets = ticks(stream, DIGIT_TICKS + GAP_TICKS + 2)
    assert kinds(packets) == "e" * DIGIT_TICKS + "q" * GAP_TICKS + "aa"
    assert packets[-2].payload == pcm16_to_ulaw(TONE)


def test_a_barge_in_clears_the_audio_and_the_digits_go_at_once() -> None:
    stream = leg()
    stream.send_audio(TONE * 10)
    stream.send_digits("7")
    assert kinds(ticks(stream, 1)) == "a"
    stream.clear()
    packets = ticks(stream, DIGIT_TICKS)
    assert kinds(packets) == "e" * DIGIT_TICKS
    assert keyed(packets) == "7"


def test_a_partial_last_frame_that_was_never_flushed_does_not_hold_the_digits() -> None:
    stream = leg()
    stream.send_audio(TONE[:100])
    stream.send_digits("9")
    assert keyed(ticks(stream, DIGIT_TICKS)) == "9"


def test_digits_need_a_negotiated_event_type_and_nothing_is_queued_for_bad_ones() -> None:
    with pytest.raises(ValueError, match="telephone-event"):
        RtpStream(0, remote=("192.0.2.1", 5004), ssrc=1).send_digits("1")
    stream = leg()
    with pytest.raises(ValueError, match="not a DTMF digit"):
        stream.send_digits("1x")
    assert kinds(ticks(stream, 2)) == "qq"
