"""A re-offer applied to a live :class:`RtpStream` (rule T9)."""

from __future__ import annotations

import pytest

from transports.g711 import pcm16_to_alaw, pcm16_to_ulaw
from transports.rtp.packet import RtpError, RtpPacket, parse_rtp
from transports.rtp.stream import FRAME_SAMPLES, RtpStream

TONE = (b"\x00\x10\x00\xf0" * (FRAME_SAMPLES // 2))[: 2 * FRAME_SAMPLES]


def sent(data: bytes | None) -> RtpPacket:
    assert data is not None
    packet = parse_rtp(data)
    assert not isinstance(packet, RtpError), packet
    return packet


def test_a_codec_change_sends_pcma_with_the_same_ssrc_sequence_and_timestamps() -> None:
    stream = RtpStream(0, remote=("192.0.2.1", 5004), ssrc=77, sequence=10, timestamp=1000)
    stream.send_audio(TONE * 2)
    before = sent(stream.tick()[1])
    stream.renegotiate(8, remote=("192.0.2.1", 5004), dtmf=None)
    after = sent(stream.tick()[1])
    assert (before.payload_type, after.payload_type) == (0, 8)
    assert before.payload == pcm16_to_ulaw(TONE)
    assert after.payload == pcm16_to_alaw(TONE)
    assert after.ssrc == before.ssrc
    assert after.sequence == before.sequence + 1
    assert after.timestamp == before.timestamp + FRAME_SAMPLES


def test_after_a_codec_change_pcma_is_taken_and_pcmu_dropped() -> None:
    stream = RtpStream(0, remote=("192.0.2.1", 5004), ssrc=77)
    stream.renegotiate(8, remote=("192.0.2.1", 5004), dtmf=None)
    alaw = RtpPacket(8, 1, 160, 5, pcm16_to_alaw(TONE))
    ulaw = RtpPacket(0, 2, 320, 5, pcm16_to_ulaw(TONE))
    stream.receive(bytes(alaw), ("192.0.2.1", 5004), 0)
    stream.receive(bytes(ulaw), ("192.0.2.1", 5004), 160)
    assert stream.stats.received_packets == 1
    assert stream.stats.dropped == 1


def test_what_the_jitter_buffer_holds_plays_with_the_codec_it_came_in() -> None:
    stream = RtpStream(0, remote=("192.0.2.1", 5004), ssrc=77)
    for n in range(4):
        packet = RtpPacket(0, n, n * FRAME_SAMPLES, 5, pcm16_to_ulaw(TONE))
        stream.receive(bytes(packet), ("192.0.2.1", 5004), n * FRAME_SAMPLES)
    stream.renegotiate(8, remote=("192.0.2.1", 5004), dtmf=None)
    frames = [stream.tick()[0] for _ in range(4)]
    played = [frame for frame in frames if frame.strip(b"\x00")]
    assert played
    assert all(abs(int.from_bytes(f[:2], "little", signed=True) - 0x1000) < 0x100 for f in played)


def test_a_new_address_is_where_rtp_goes_and_the_stream_latches_again() -> None:
    stream = RtpStream(0, remote=("192.0.2.1", 5004), ssrc=77)
    stream.receive(bytes(RtpPacket(0, 1, 160, 5, b"\xff" * 160)), ("192.0.2.1", 7000), 0)
    assert stream.tick()[2] == ("192.0.2.1", 7000)  # latched (NAT)
    stream.renegotiate(0, remote=("192.0.2.1", 5004), dtmf=None)  # same SDP address
    assert stream.tick()[2] == ("192.0.2.1", 7000)  # still latched
    stream.renegotiate(0, remote=("192.0.2.50", 6000), dtmf=None)
    assert stream.tick()[2] == ("192.0.2.50", 6000)
    stream.receive(bytes(RtpPacket(0, 2, 320, 5, b"\xff" * 160)), ("192.0.2.50", 6002), 160)
    assert stream.tick()[2] == ("192.0.2.50", 6002)


def test_only_g711_can_be_renegotiated() -> None:
    stream = RtpStream(0, remote=("192.0.2.1", 5004), ssrc=77)
    with pytest.raises(ValueError, match=r"not G\.711"):
        stream.renegotiate(9, remote=("192.0.2.1", 5004), dtmf=None)


def test_t10_while_held_nothing_is_sent_the_reply_is_dropped_and_the_clock_goes_on() -> None:
    stream = RtpStream(0, remote=("192.0.2.1", 5004), ssrc=77, sequence=10, timestamp=1000)
    before = sent(stream.tick()[1])
    stream.send_audio(TONE * 3)
    stream.sending = False
    assert [stream.tick()[1] for _ in range(2)] == [None, None]
    assert stream.queued_samples == FRAME_SAMPLES  # two frames of the reply went unheard
    stream.sending = True
    after = sent(stream.tick()[1])
    assert after.sequence == before.sequence + 1  # no packet was sent: none missing
    assert after.timestamp == before.timestamp + 3 * FRAME_SAMPLES  # the media clock went on
    assert after.payload == pcm16_to_ulaw(TONE)
