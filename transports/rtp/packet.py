"""RTP and RTCP packets (RFC 3550 §5, §6), parsed and built, never raising on peer input.

:func:`parse_rtp` gives an :class:`RtpPacket` or an :class:`RtpError`; ``bytes(packet)``
builds one. :func:`parse_rtcp` reads a compound RTCP packet into reports
(:class:`SenderReport`, :class:`ReceiverReport`, :class:`Sdes`, :class:`Bye`);
:func:`build_rtcp` writes one. :func:`is_rtcp` tells the two apart on a shared port
(RFC 5761 §4: RTCP packet types 200-204 fall where RTP would have payload types 72-76).

=====  ======================================================================  ============
rule   peer input                                                              result
=====  ======================================================================  ============
P1     fewer than 12 bytes, or a version other than 2                          RtpError
P2     CSRC list or header extension longer than the packet                    RtpError
P3     padding bit with a pad count of 0 or longer than the payload            RtpError
P4     header extension: skipped (its bytes kept in ``extension``)             accepted
R1     an RTCP packet whose length field overruns the datagram, or whose       RtpError
       report count does not fit, or a first packet that is not SR/RR
R2     RTCP packet types we do not read (APP, XR, feedback): skipped           accepted
=====  ======================================================================  ============
"""

from __future__ import annotations

import struct

import msgspec

__all__ = [
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtpError",
    "RtpPacket",
    "Sdes",
    "SenderReport",
    "build_rtcp",
    "is_rtcp",
    "parse_rtcp",
    "parse_rtp",
]

_HEADER = struct.Struct("!BBHII")
RTP_VERSION = 2


class RtpError(msgspec.Struct, frozen=True):
    """Why a datagram was dropped (for a log line and a counter)."""

    rule: str
    reason: str


class RtpPacket(msgspec.Struct, frozen=True):
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: bytes | None = None  # profile (2 bytes) + data, as received

    def __bytes__(self) -> bytes:
        first = RTP_VERSION << 6 | (0x10 if self.extension is not None else 0) | len(self.csrcs)
        second = (0x80 if self.marker else 0) | self.payload_type
        head = _HEADER.pack(
            first, second, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc
        )
        head += b"".join(struct.pack("!I", c) for c in self.csrcs)
        if self.extension is not None:
            profile, data = self.extension[:2], self.extension[2:]
            head += profile + struct.pack("!H", len(data) // 4) + data
        return head + self.payload


def parse_rtp(data: bytes) -> RtpPacket | RtpError:
    """An RTP packet from one datagram (rules P1-P4)."""
    if len(data) < _HEADER.size:
        return RtpError("P1", f"{len(data)} bytes")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        return RtpError("P1", f"version {first >> 6}")
    offset = _HEADER.size + 4 * (first & 0x0F)
    if offset > len(data):
        return RtpError("P2", "CSRC list overruns the packet")
    csrcs = struct.unpack_from(f"!{first & 0x0F}I", data, _HEADER.size)
    extension = None
    if first & 0x10:
        if offset + 4 > len(data):
            return RtpError("P2", "extension header overruns the packet")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        end = offset + 4 + 4 * words
        if end > len(data):
            return RtpError("P2", "extension overruns the packet")
        extension = data[offset : offset + 2] + data[offset + 4 : end]
        offset = end
    payload = data[offset:]
    if first & 0x20:
        pad = data[-1] if len(data) > offset else 0
        if pad == 0 or pad > len(payload):
            return RtpError("P3", f"padding of {pad} bytes")
        payload = payload[:-pad]
    return RtpPacket(
        second & 0x7F, sequence, timestamp, ssrc, payload, bool(second & 0x80), csrcs, extension
    )


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on a port shared by RTP and RTCP is RTCP (RFC 5761 §4)."""
    return len(data) >= 2 and 200 <= data[1] <= 204


# -- RTCP -----------------------------------------------------------------------------------


class ReportBlock(msgspec.Struct, frozen=True):
    """Reception statistics of one source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # out of 256, since the last report
    cumulative_lost: int  # signed 24 bits
    highest_sequence: int  # extended
    jitter: int  # in timestamp units
    last_sr: int = 0  # middle 32 bits of the last SR's NTP time
    delay_since_last_sr: int = 0  # in 1/65536 s

    def pack(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return struct.pack(
            "!IIIIII",
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.last_sr & 0xFFFFFFFF,
            self.delay_since_last_sr & 0xFFFFFFFF,
        )

    @classmethod
    def unpack(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)


class SenderReport(msgspec.Struct, frozen=True, tag="sr"):
    ssrc: int
    ntp_time: int  # 64-bit NTP timestamp (seconds << 32 | fraction)
    rtp_time: int
    packets: int
    octets: int
    reports: tuple[ReportBlock, ...] = ()


class ReceiverReport(msgspec.Struct, frozen=True, tag="rr"):
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


class Sdes(msgspec.Struct, frozen=True, tag="sdes"):
    """One chunk's CNAME (the only item we write; other items are read past)."""

    ssrc: int
    cname: str


class Bye(msgspec.Struct, frozen=True, tag="bye"):
    ssrcs: tuple[int, ...]
    reason: str = ""


RtcpPacket = SenderReport | ReceiverReport | Sdes | Bye


def _rtcp_header(packet_type: int, count: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!BBH", RTP_VERSION << 6 | count, packet_type, len(body) // 4) + body


def build_rtcp(*packets: RtcpPacket) -> bytes:
    """A compound RTCP packet (RFC 3550 §6.1: start it with a report, include an SDES)."""
    out = b""
    for packet in packets:
        match packet:
            case SenderReport():
                body = struct.pack(
                    "!IQIII",
                    packet.ssrc,
                    packet.ntp_time,
                    packet.rtp_time & 0xFFFFFFFF,
                    packet.packets & 0xFFFFFFFF,
                    packet.octets & 0xFFFFFFFF,
                )
                body += b"".join(block.pack() for block in packet.reports)
                out += _rtcp_header(200, len(packet.reports), body)
            case ReceiverReport():
                body = struct.pack("!I", packet.ssrc)
                body += b"".join(block.pack() for block in packet.reports)
                out += _rtcp_header(201, len(packet.reports), body)
            case Sdes():
                cname = packet.cname.encode("utf-8")[:255]
                chunk = struct.pack("!IBB", packet.ssrc, 1, len(cname)) + cname + b"\x00"
                out += _rtcp_header(202, 1, chunk)
            case Bye():
                body = b"".join(struct.pack("!I", ssrc) for ssrc in packet.ssrcs)
                if packet.reason:
                    reason = packet.reason.encode("utf-8")[:255]
                    body += bytes([len(reason)]) + reason
                out += _rtcp_header(203, len(packet.ssrcs), body)
    return out


def parse_rtcp(data: bytes) -> list[RtcpPacket] | RtpError:
    """The reports in a compound RTCP packet (rules R1, R2)."""
    found: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            return RtpError("R1", "truncated RTCP header")
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        end = offset + 4 + 4 * words
        if first >> 6 != RTP_VERSION or end > len(data):
            return RtpError("R1", f"bad RTCP header at byte {offset}")
        if offset == 0 and packet_type not in (200, 201):
            return RtpError("R1", f"compound packet starts with type {packet_type}")
        count = first & 0x1F
        body = data[offset + 4 : end]
        parsed = _rtcp_body(packet_type, count, body)
        if isinstance(parsed, RtpError):
            return parsed
        found += parsed
        offset = end
    return found


def _blocks(body: bytes, start: int, count: int) -> tuple[ReportBlock, ...] | None:
    if start + 24 * count > len(body):
        return None
    return tuple(ReportBlock.unpack(body, start + 24 * i) for i in range(count))


def _rtcp_body(packet_type: int, count: int, body: bytes) -> list[RtcpPacket] | RtpError:
    if packet_type == 200:
        if len(body) < 24:
            return RtpError("R1", "short SR")
        ssrc, ntp, rtp, packets, octets = struct.unpack_from("!IQIII", body)
        blocks = _blocks(body, 24, count)
        if blocks is None:
            return RtpError("R1", "SR report blocks overrun")
        return [SenderReport(ssrc, ntp, rtp, packets, octets, blocks)]
    if packet_type == 201:
        if len(body) < 4:
            return RtpError("R1", "short RR")
        blocks = _blocks(body, 4, count)
        if blocks is None:
            return RtpError("R1", "RR report blocks overrun")
        return [ReceiverReport(struct.unpack_from("!I", body)[0], blocks)]
    if packet_type == 202:
        return _sdes(body, count)
    if packet_type == 203:
        if len(body) < 4 * count:
            return RtpError("R1", "BYE list overruns")
        ssrcs = struct.unpack_from(f"!{count}I", body)
        reason = ""
        if len(body) > 4 * count:
            size = body[4 * count]
            reason = body[4 * count + 1 : 4 * count + 1 + size].decode("utf-8", "replace")
        return [Bye(ssrcs, reason)]
    return []  # R2


def _sdes(body: bytes, count: int) -> list[RtcpPacket] | RtpError:
    found: list[RtcpPacket] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            return RtpError("R1", "SDES chunk overruns")
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        cname = ""
        while offset < len(body) and body[offset] != 0:
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                return RtpError("R1", "SDES item overruns")
            kind, size = body[offset], body[offset + 1]
            if kind == 1:
                cname = body[offset + 2 : offset + 2 + size].decode("utf-8", "replace")
            offset += 2 + size
        offset += 4 - offset % 4  # the null item and padding to a word
        found.append(Sdes(ssrc, cname))
    return found
