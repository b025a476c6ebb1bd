"""A pcap file of RTP for sipp's ``<exec play_pcap_audio="..."/>``: what a capture of a phone
talking would hold, written with ``struct`` alone.

:func:`rtp_pcap` writes the classic libpcap format (a global header, then one record per
packet: Ethernet II, IPv4, UDP, RTP), one G.711 μ-law packet per 20 ms frame, their capture
times 20 ms apart (sipp paces its sending by them). The addresses and ports in the capture do
not matter: sipp sends each payload from its media port to the media address of the SDP it
received. :func:`read_pcap` reads such a file back (the helper's own test).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from transports.rtp.packet import RtpPacket

__all__ = ["PCAP_MAGIC", "read_pcap", "rtp_pcap"]

#: the classic libpcap magic, microsecond timestamps (written in this machine's byte order
#: by libpcap; here always little-endian, which the magic tells readers)
PCAP_MAGIC = 0xA1B2C3D4
_LINKTYPE_ETHERNET = 1
_GLOBAL = struct.Struct("<IHHiIII")  # magic, version 2.4, zone, sigfigs, snaplen, link type
_RECORD = struct.Struct("<IIII")  # seconds, microseconds, bytes captured, bytes on the wire
_ETHERNET = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_FRAME_US = 20_000


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum."""
    data += b"\x00" * (len(data) % 2)
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _datagram(payload: bytes, source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """``payload`` in UDP in IPv4 in Ethernet, with both checksums (sipp adjusts the UDP one
    for the ports it sends with, RFC 1624 style, so it must be right to begin with)."""
    src, dst = bytes(map(int, source[0].split("."))), bytes(map(int, destination[0].split(".")))
    length = _UDP.size + len(payload)
    udp = _UDP.pack(source[1], destination[1], length, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    head = _IPV4.pack(0x45, 0, _IPV4.size + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    ethernet = _ETHERNET.pack(b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x00\x01", 0x0800)
    return ethernet + head + udp


def rtp_pcap(
    frames: Sequence[bytes],
    path: Path,
    *,
    ssrc: int = 0x5EED5EED,
    source: tuple[str, int] = ("10.0.0.1", 6000),
    destination: tuple[str, int] = ("10.0.0.2", 6002),
) -> Path:
    """Write ``frames`` (160 bytes of μ-law each) to ``path`` as PCMU RTP packets 20 ms apart,
    the first with the marker bit (a talk spurt starts)."""
    out = bytearray(_GLOBAL.pack(PCAP_MAGIC, 2, 4, 0, 0, 65_535, _LINKTYPE_ETHERNET))
    for index, frame in enumerate(frames):
        rtp = RtpPacket(0, 1 + index, 160 * index, ssrc, frame, marker=index == 0)
        record = _datagram(bytes(rtp), source, destination)
        when = index * _FRAME_US
        out += _RECORD.pack(when // 1_000_000, when % 1_000_000, len(record), len(record))
        out += record
    path.write_bytes(bytes(out))
    return path


def read_pcap(path: Path) -> list[tuple[int, bytes]]:
    """The (microseconds, UDP payload) of each record of a file :func:`rtp_pcap` wrote."""
    data = path.read_bytes()
    magic, major, minor, *_, link = _GLOBAL.unpack_from(data)
    if (magic, major, minor, link) != (PCAP_MAGIC, 2, 4, _LINKTYPE_ETHERNET):
        raise ValueError(f"not an Ethernet pcap of ours: {path}")
    found, offset = [], _GLOBAL.size
    while offset < len(data):
        seconds, micros, captured, _ = _RECORD.unpack_from(data, offset)
        record = data[offset + _RECORD.size : offset + _RECORD.size + captured]
        udp = _ETHERNET.size + _IPV4.size
        found.append((seconds * 1_000_000 + micros, record[udp + _UDP.size :]))
        offset += _RECORD.size + captured
    return found
