"""What an :class:`RtpStream` learns from the far end's RTCP and puts in its own reports (rule
T5b: LSR and DLSR, RFC 3550 §6.4.1), and where it sends with symmetric RTP off (rule T4)."""

from __future__ import annotations

from transports.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtpError,
    RtpPacket,
    SenderReport,
    build_rtcp,
    parse_rtcp,
)
from transports.rtp.stream import FRAME_SAMPLES, RtcpBye, RtpStream

SDP = ("192.0.2.4", 49170)  # where the far end's SDP says its media goes
CALLER = 99  # the far end's SSRC
#: an NTP time whose middle 32 bits (RFC 3550's LSR) are 0x5678_9ABC
NTP = 0x1234_5678_9ABC_DEF0
SECOND = 8000  # samples at 8 kHz: the stream's clock


def leg(*, symmetric: bool = True) -> RtpStream:
    stream = RtpStream(0, remote=SDP, ssrc=7, symmetric=symmetric)
    for sequence in (1, 2, 3):  # the caller's stream, so there is a source to report on
        packet = RtpPacket(0, sequence, sequence * FRAME_SAMPLES, CALLER, b"\xff" * FRAME_SAMPLES)
        stream.receive(bytes(packet), SDP, sequence * FRAME_SAMPLES)
    return stream


def block(data: bytes) -> ReportBlock:
    parsed = parse_rtcp(data)
    assert not isinstance(parsed, RtpError), parsed
    report = parsed[0]
    assert isinstance(report, ReceiverReport | SenderReport)
    (only,) = report.reports
    return only


def sender_report(ssrc: int = CALLER, ntp: int = NTP) -> list[RtcpPacket]:
    return [SenderReport(ssrc, ntp, 0, 10, 1600)]


def test_before_any_sender_report_lsr_and_dlsr_are_zero() -> None:
    got = block(leg().rtcp(0, now=5 * SECOND))
    assert (got.ssrc, got.last_sr, got.delay_since_last_sr) == (CALLER, 0, 0)


def test_a_block_carries_the_middle_of_the_last_sr_time_and_the_delay_since_it_t5b() -> None:
    stream = leg()
    assert stream.receive_rtcp(sender_report(), 3 * SECOND) == []
    got = block(stream.rtcp(0, now=3 * SECOND + SECOND // 2))  # sent half a second later
    assert got.last_sr == 0x5678_9ABC
    assert got.delay_since_last_sr == 65536 // 2  # in 1/65536 s
    later = block(stream.rtcp(0, now=5 * SECOND))  # the same SR, two seconds after it came
    assert (later.last_sr, later.delay_since_last_sr) == (0x5678_9ABC, 2 * 65536)


def test_with_rtcp_mux_a_sender_report_on_the_rtp_port_counts_the_same() -> None:
    stream = leg()
    data = build_rtcp(*sender_report(), Bye((CALLER,), "done"))
    assert stream.receive(data, SDP, 10 * SECOND) == [RtcpBye((CALLER,), "done")]
    got = block(stream.rtcp(0, now=10 * SECOND + 80))  # 10 ms
    assert (got.last_sr, got.delay_since_last_sr) == (0x5678_9ABC, 65536 // 100)


def test_the_latest_sender_report_is_the_one_reported() -> None:
    stream = leg()
    stream.receive_rtcp(sender_report(ntp=NTP), SECOND)
    stream.receive_rtcp(sender_report(ntp=0xAAAA_BBBB_CCCC_DDDD), 2 * SECOND)
    got = block(stream.rtcp(0, now=2 * SECOND + SECOND // 4))
    assert (got.last_sr, got.delay_since_last_sr) == (0xBBBB_CCCC, 65536 // 4)


def test_a_sender_report_from_another_source_is_not_reported_as_this_ones() -> None:
    stream = leg()
    stream.receive_rtcp(sender_report(ssrc=CALLER + 1), SECOND)
    got = block(stream.rtcp(0, now=2 * SECOND))
    assert (got.ssrc, got.last_sr, got.delay_since_last_sr) == (CALLER, 0, 0)


def test_a_receiver_report_changes_nothing() -> None:
    stream = leg()
    stream.receive_rtcp(sender_report(), SECOND)
    stream.receive_rtcp([ReceiverReport(CALLER)], 3 * SECOND)
    got = block(stream.rtcp(0, now=4 * SECOND))
    assert (got.last_sr, got.delay_since_last_sr) == (0x5678_9ABC, 3 * 65536)


# -- T4 with symmetric RTP off ------------------------------------------------------------------


def packet_from(sequence: int) -> bytes:
    return bytes(RtpPacket(0, sequence, sequence * FRAME_SAMPLES, CALLER, b"\xff" * 160))


def test_without_symmetric_rtp_media_goes_to_the_sdp_address_wherever_it_comes_from() -> None:
    stream = leg(symmetric=False)
    elsewhere, another_host = ("192.0.2.4", 6000), ("198.51.100.66", 30000)
    stream.receive(packet_from(4), elsewhere, 4 * FRAME_SAMPLES)
    stream.receive(packet_from(5), another_host, 5 * FRAME_SAMPLES)
    assert stream.tick()[2] == SDP
    assert (stream.stats.received_packets, stream.stats.dropped) == (5, 0)  # none dropped (T4b)


def test_with_symmetric_rtp_media_goes_where_it_comes_from() -> None:
    stream = leg()
    elsewhere = ("192.0.2.4", 6000)
    stream.receive(packet_from(4), elsewhere, 4 * FRAME_SAMPLES)
    assert stream.tick()[2] == elsewhere
