"""Malformed RTP and RTCP datagrams, byte by byte (transports/rtp/packet.py): each is dropped
with the rule it breaks and a reason, never an exception; items a reader does not use are read
past."""

from __future__ import annotations

import struct

import pytest

from transports.rtp.packet import (
    ReceiverReport,
    RtpError,
    Sdes,
    build_rtcp,
    parse_rtcp,
    parse_rtp,
)

#: a valid first packet of a compound (RFC 3550 §6.1 starts it with a report)
RR = build_rtcp(ReceiverReport(0x1234, ()))


def rtcp(packet_type: int, count: int, body: bytes) -> bytes:
    """One RTCP packet whose header counts ``body`` (padded to whole words)."""
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (rtcp(200, 0, b"\x00" * 20), "short SR"),
        (rtcp(200, 2, b"\x00" * 48), "SR report blocks overrun"),
        (rtcp(201, 0, b""), "short RR"),
        (RR + rtcp(203, 2, b"\x00" * 4), "BYE list overruns"),
        (RR + rtcp(202, 2, struct.pack("!I", 7) + b"\x00" * 4), "SDES chunk overruns"),
        (RR + rtcp(202, 1, struct.pack("!I", 7) + bytes([1, 10]) + b"ab"), "SDES item overruns"),
    ],
)
def test_a_malformed_rtcp_packet_is_dropped_with_its_reason(data: bytes, reason: str) -> None:
    assert parse_rtcp(data) == RtpError("R1", reason)


def test_sdes_items_other_than_the_cname_are_read_past() -> None:
    name = bytes([2, 5]) + b"Alice"  # NAME, not used
    cname = bytes([1, 9]) + b"bob@host1"
    chunk = struct.pack("!I", 7) + name + cname + b"\x00"
    assert parse_rtcp(RR + rtcp(202, 1, chunk)) == [
        ReceiverReport(0x1234, ()),
        Sdes(7, "bob@host1"),
    ]


def test_an_rtp_extension_header_cut_short_is_dropped() -> None:
    header = struct.pack("!BBHII", 0x90, 0, 1, 160, 0x1234)  # X set, nothing after the header
    assert parse_rtp(header + b"\xbe") == RtpError("P2", "extension header overruns the packet")
