"""RTP and RTCP packets (RFC 3550), and one G.711 call leg driven tick by tick."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transports.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from transports.rtp.dtmf import Digit, EventPayload
from transports.rtp.jitter import JitterBuffer
from transports.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtpError,
    RtpPacket,
    Sdes,
    SenderReport,
    build_rtcp,
    is_rtcp,
    parse_rtcp,
    parse_rtp,
)
from transports.rtp.stream import FRAME_SAMPLES, RtcpBye, RtpStream

PEER = ("192.0.2.4", 49170)

# -- RTP packets ------------------------------------------------------------------------------


def test_a_packet_is_built_as_rfc_3550_lays_it_out() -> None:
    packet = RtpPacket(0, 0x1234, 0xDEADBEEF, 0x01020304, b"\xff" * 4, marker=True)
    assert bytes(packet) == bytes.fromhex("8080 1234 deadbeef 01020304 ffffffff")


packets = st.builds(
    RtpPacket,
    st.integers(0, 127),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=200),
    st.booleans(),
    st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    st.none()
    | st.binary(min_size=2, max_size=2).flatmap(
        lambda p: st.binary(max_size=12).map(lambda d: p + d[: len(d) - len(d) % 4])
    ),
)


@given(packets)
def test_any_packet_round_trips(packet: RtpPacket) -> None:
    assert parse_rtp(bytes(packet)) == packet


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_give_an_rtp_error(data: bytes) -> None:
    assert isinstance(parse_rtp(data), RtpPacket | RtpError)
    assert isinstance(parse_rtcp(data), list | RtpError)


def test_padding_is_removed() -> None:
    data = bytearray(bytes(RtpPacket(8, 1, 2, 3, b"abcd" + b"\x00\x00\x03")))
    data[0] |= 0x20
    packet = parse_rtp(bytes(data))
    assert isinstance(packet, RtpPacket)
    assert packet.payload == b"abcd"


BROKEN = {
    "short": (b"\x80\x00", "P1"),
    "version 1": (b"\x40" + bytes(11), "P1"),
    "csrc overrun": (b"\x8f" + bytes(11), "P2"),
    "extension overrun": (b"\x90" + bytes(11) + b"\xbe\xde\x00\x05", "P2"),
    "zero padding": (b"\xa0" + bytes(11) + b"ab\x00", "P3"),
    "padding too long": (b"\xa0" + bytes(11) + b"ab\x09", "P3"),
}


@pytest.mark.parametrize(("data", "rule"), BROKEN.values(), ids=BROKEN.keys())
def test_broken_packets_are_errors(data: bytes, rule: str) -> None:
    error = parse_rtp(data)
    assert isinstance(error, RtpError)
    assert error.rule == rule


# -- RTCP -------------------------------------------------------------------------------------

BLOCK = ReportBlock(0xCAFE, 25, -3, 70_000, 12, 0x12345678, 65536)


def test_a_compound_packet_round_trips() -> None:
    sent: list[RtcpPacket] = [
        SenderReport(1, (3_900_000_000 << 32) | 5, 160, 10, 1600, (BLOCK,)),
        Sdes(1, "voxline@host"),
        Bye((1, 2), "hanging up"),
    ]
    data = build_rtcp(*sent)
    assert len(data) % 4 == 0
    assert is_rtcp(data)
    assert parse_rtcp(data) == sent
    assert parse_rtcp(build_rtcp(ReceiverReport(9), Bye((9,)))) == [ReceiverReport(9), Bye((9,))]


def test_rtp_is_not_taken_for_rtcp() -> None:
    assert not is_rtcp(bytes(RtpPacket(0, 1, 2, 3, b"x", marker=True)))


def test_unknown_rtcp_types_are_skipped_r2() -> None:
    app = struct.pack("!BBH", 0x80, 204, 2) + b"\x00\x00\x00\x01name"
    data = build_rtcp(ReceiverReport(5)) + app
    assert parse_rtcp(data) == [ReceiverReport(5)]


@pytest.mark.parametrize(
    "data",
    [
        build_rtcp(Sdes(1, "x")),  # does not start with a report
        build_rtcp(ReceiverReport(1))[:-1],  # truncated
        b"\x81\xc9\x00\x01" + bytes(4),  # RR claiming a block it has no room for
        b"\x80\xc9\x00\x09" + bytes(4),  # length beyond the datagram
    ],
    ids=["sdes first", "truncated", "block overrun", "length overrun"],
)
def test_broken_rtcp_is_an_error_r1(data: bytes) -> None:
    error = parse_rtcp(data)
    assert isinstance(error, RtpError)
    assert error.rule == "R1"


# -- a call leg -------------------------------------------------------------------------------


def leg(*, comfort: bool = True, jitter: JitterBuffer | None = None) -> RtpStream:
    return RtpStream(
        0,
        remote=PEER,
        ssrc=7,
        sequence=65534,
        timestamp=1000,
        dtmf=101,
        comfort=comfort,
        jitter=jitter,
    )


def tone(samples: int, value: int = 1000) -> bytes:
    return struct.pack(f"<{samples}h", *([value] * samples))


def sent(stream: RtpStream, ticks: int) -> list[RtpPacket]:
    out = []
    for _ in range(ticks):
        _, data, _ = stream.tick()
        assert data is not None
        packet = parse_rtp(data)
        assert isinstance(packet, RtpPacket)
        out.append(packet)
    return out


def test_bot_audio_goes_out_in_20ms_frames_with_a_marker_at_the_start() -> None:
    stream = leg()
    stream.send_audio(tone(2 * FRAME_SAMPLES + 10))
    first, second, third = sent(stream, 3)
    assert [p.sequence for p in (first, second, third)] == [65534, 65535, 0]  # wraps
    assert [p.timestamp for p in (first, second, third)] == [1000, 1160, 1320]
    assert (first.marker, second.marker) == (True, False)
    assert first.payload == pcm16_to_ulaw(tone(FRAME_SAMPLES))
    assert third.payload == b"\xff" * FRAME_SAMPLES  # the 10-sample tail waits for flush
    stream.flush()
    (tail,) = sent(stream, 1)
    assert tail.marker
    assert ulaw_to_pcm16(tail.payload)[20:] == bytes(2 * (FRAME_SAMPLES - 10))


def test_a_quiet_bot_sends_comfort_silence_or_nothing_t7() -> None:
    (packet,) = sent(leg(), 1)
    assert packet.payload == b"\xff" * FRAME_SAMPLES
    quiet = leg(comfort=False)
    assert quiet.tick()[1] is None
    quiet.send_audio(tone(FRAME_SAMPLES))
    (packet,) = sent(quiet, 1)
    assert packet.timestamp == 1160  # the clock ran on while nothing was sent


def test_clear_stops_the_reply_at_the_next_frame() -> None:
    stream = leg()
    stream.send_audio(tone(50 * FRAME_SAMPLES))
    sent(stream, 2)
    assert stream.clear() == 48 * FRAME_SAMPLES
    (packet,) = sent(stream, 1)
    assert packet.payload == b"\xff" * FRAME_SAMPLES


def test_a_digit_interrupts_audio_with_its_event_packets_t8() -> None:
    stream = leg()
    stream.send_audio(tone(20 * FRAME_SAMPLES))
    sent(stream, 1)
    stream.send_digit("5", duration=480)
    events = sent(stream, 5)
    assert [p.payload_type for p in events] == [101] * 5
    assert {p.timestamp for p in events} == {1160}
    payloads = [EventPayload.parse(p.payload) for p in events]
    assert [(e.event, e.end, e.duration) for e in payloads if e] == [
        (5, False, 160),
        (5, False, 320),
        (5, True, 480),
        (5, True, 480),
        (5, True, 480),
    ]
    (after,) = sent(stream, 1)
    assert (after.payload_type, after.timestamp) == (0, 1160 + 5 * FRAME_SAMPLES)


def test_a_digit_needs_a_negotiated_event_type() -> None:
    with pytest.raises(ValueError, match="telephone-event"):
        RtpStream(8, remote=PEER, ssrc=1).send_digit("1")


def caller_packet(sequence: int, payload_type: int = 0, payload: bytes = b"") -> bytes:
    payload = payload or pcm16_to_ulaw(tone(FRAME_SAMPLES, 2000))
    return bytes(RtpPacket(payload_type, sequence, sequence * FRAME_SAMPLES, 99, payload))


def test_caller_audio_comes_out_decoded_after_the_buffer_fills() -> None:
    stream = leg()
    for sequence in (1, 3, 2):  # out of order
        stream.receive(caller_packet(sequence), PEER, sequence * FRAME_SAMPLES)
    frames = [stream.tick()[0] for _ in range(4)]
    assert frames[:3] == [ulaw_to_pcm16(pcm16_to_ulaw(tone(FRAME_SAMPLES, 2000)))] * 3
    assert frames[3] == bytes(2 * FRAME_SAMPLES)  # underrun: silence
    assert all(len(frame) == 2 * FRAME_SAMPLES for frame in frames)


def test_wrong_payload_types_and_garbage_are_dropped_t3() -> None:
    stream = leg()
    assert stream.receive(caller_packet(1, payload_type=8), PEER, 0) == []
    assert stream.receive(b"\x00junk", PEER, 0) == []
    assert stream.stats.dropped == 2
    assert len(stream.jitter) == 0


def test_media_is_sent_to_where_it_comes_from_t4() -> None:
    stream = leg()
    nat = ("203.0.113.9", 30000)
    stream.receive(caller_packet(1), nat, 0)
    assert stream.tick()[2] == nat
    stream.receive(caller_packet(2), ("203.0.113.9", 30002), 0)  # rebinding
    assert stream.remote == ("203.0.113.9", 30002)
    stream.receive(caller_packet(3), ("198.51.100.66", 30000), 0)  # T4b
    assert stream.remote == ("203.0.113.9", 30002)
    assert stream.stats.dropped == 1


def test_dtmf_packets_become_digits_t2() -> None:
    stream = leg()
    end = bytes(EventPayload(11, True, 10, 800))
    packets = [bytes(RtpPacket(101, s, 4000, 99, end)) for s in (5, 6, 7)]
    digits = [stream.receive(packet, PEER, 0) for packet in packets]
    assert digits == [[Digit("#", 4000, 800)], [], []]


def test_rtcp_bye_is_reported_t5() -> None:
    data = build_rtcp(ReceiverReport(99), Bye((99,), "bye"))
    assert leg().receive(data, PEER, 0) == [RtcpBye((99,), "bye")]


def test_the_leg_reports_rr_then_sr_with_a_block_for_the_caller() -> None:
    stream = leg(jitter=JitterBuffer(depth=1))
    rr = parse_rtcp(stream.rtcp(0, now=0))
    assert rr == [ReceiverReport(7), Sdes(7, "voxline")]
    for sequence in (1, 2, 4):
        stream.receive(caller_packet(sequence), PEER, sequence * FRAME_SAMPLES)
    stream.tick()
    parsed = parse_rtcp(stream.rtcp(123 << 32, now=0, bye="done"))
    assert isinstance(parsed, list)
    report, _, bye = parsed
    assert isinstance(report, SenderReport)
    assert (report.packets, report.octets, report.ntp_time) == (1, 160, 123 << 32)
    (block,) = report.reports
    assert (block.ssrc, block.cumulative_lost, block.highest_sequence) == (99, 1, 4)
    assert block.fraction_lost == 256 // 4
    assert bye == Bye((7,), "done")


def test_a_digit_whose_ends_were_lost_is_reported_by_the_audio_after_it() -> None:
    stream = leg()
    update = bytes(EventPayload(3, False, 10, 320))
    assert stream.receive(bytes(RtpPacket(101, 5, 4000, 99, update)), PEER, 0) == []
    late_audio = bytes(RtpPacket(0, 6, 4000 + 320 + 8000, 99, b"\xff" * 160))
    assert stream.receive(late_audio, PEER, 0) == [Digit("3", 4000, 320)]
