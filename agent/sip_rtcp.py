"""One SIP call's RTCP (RFC 3550 §6): reports out every few seconds, BYE at the end.

The reports themselves are :meth:`RtpStream.rtcp <transports.rtp.stream.RtpStream.rtcp>`'s
(sans-I/O): a compound packet of SR (RR before we sent any RTP) with a report block about
the caller's stream (loss and jitter from the jitter buffer's counters), SDES CNAME, and BYE
when the call ends. This adapter only sends them and reads the wall clock for their NTP time:

- **where**: with ``a=rtcp-mux`` agreed (RFC 5761), on the RTP socket to where RTP goes
  (symmetric RTP's latched address); else from the RTP port + 1 (the port pair
  :class:`agent.sip_server.RtpPorts` reserved) to the far end's RTCP port (``a=rtcp``, else
  its RTP port + 1), and once RTCP comes from the far end's RTP host, to where it came from
  (not with ``server.sip.symmetric_rtp`` off: the SDP's address only);
- **when**: the first report after half the interval (RFC 3550 §6.2's initial halving), then
  every :data:`RTCP_INTERVAL_S`; a BYE compound when the call ends (:meth:`RtcpLeg.bye`);
- **received** RTCP (on the RTCP socket; with rtcp-mux the stream reads it on the RTP socket)
  goes to the stream with its arrival time (:meth:`RtpStream.receive_rtcp
  <transports.rtp.stream.RtpStream.receive_rtcp>`): the far end's last sender report gives our
  report block its LSR and DLSR (RFC 3550 §6.4.1). A far end's BYE is logged, a datagram that
  is no RTCP is counted (:attr:`RtcpLeg.dropped`) and dropped. It never ends the call (the SIP
  BYE does).
- **time**: the NTP time in our SR is the wall clock (``time.time``); arrivals and DLSR count
  on ``now``, the call's media time (samples at 8 kHz on its injected clock, the one its
  RTP arrivals are counted on).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
from anyio.abc import UDPSocket

from transports.rtp.packet import RtpError, parse_rtcp
from transports.rtp.stream import RtpStream
from transports.sip.sdp import Negotiated
from transports.sip.transaction import Address

__all__ = ["NTP_EPOCH", "RTCP_INTERVAL_S", "RtcpLeg", "ntp_time"]

log = logging.getLogger("voxline.sip")

#: seconds between two reports (RFC 3550 §6.2's minimum for a two-party call)
RTCP_INTERVAL_S = 5.0
#: seconds from 1900 (NTP's epoch) to 1970 (Unix's)
NTP_EPOCH = 2_208_988_800


def ntp_time(unix: float) -> int:
    """``unix`` seconds as a 64-bit NTP timestamp (seconds << 32 | fraction)."""
    return int((unix + NTP_EPOCH) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


class RtcpLeg:
    """RTCP for one call's ``stream``: ``rtp`` is the call's RTP socket, ``rtcp`` the one on
    the port above it; ``agreed`` says what the latest offer/answer agreed (rtcp-mux, port)."""

    def __init__(
        self,
        stream: RtpStream,
        rtp: UDPSocket,
        rtcp: UDPSocket,
        agreed: Callable[[], Negotiated],
        name: str,
        now: Callable[[], int],
    ) -> None:
        self.stream = stream
        self.now = now  # the call's media time: samples at 8 kHz
        self.rtp, self.rtcp = rtp, rtcp
        self.agreed = agreed
        self.name = name
        self.sent = 0  # compound packets sent
        self.received = 0  # RTCP compounds read on the RTCP socket
        self.dropped = 0  # datagrams there that were not RTCP
        self._latched: Address | None = None  # where the far end's RTCP comes from

    @property
    def peer(self) -> tuple[UDPSocket, Address]:
        """The socket to send from and where to."""
        agreed = self.agreed()
        if agreed.rtcp_mux:
            return self.rtp, self.stream.remote
        return self.rtcp, self._latched or (self.stream.remote[0], agreed.rtcp_to)

    async def run(self) -> None:
        """Report every :data:`RTCP_INTERVAL_S` (the first after half of it) until cancelled;
        read the RTCP socket meanwhile."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._receive)
            await anyio.sleep(RTCP_INTERVAL_S / 2)
            while True:
                await self._send(None)
                await anyio.sleep(RTCP_INTERVAL_S)

    async def bye(self, reason: str) -> None:
        """The last compound: a report and BYE (the call ends)."""
        await self._send(reason)

    async def _send(self, bye: str | None) -> None:
        if not self.stream.sending and bye is None:
            return  # held: the far end is not listening (its RTCP port may be gone too)
        sock, peer = self.peer
        try:
            report = self.stream.rtcp(ntp_time(time.time()), now=self.now(), bye=bye)
            await sock.sendto(report, *peer)
            self.sent += 1
        except (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError) as error:
            log.info("sip call %s: RTCP not sent: %s", self.name, error)

    async def _receive(self) -> None:
        async for data, (host, port) in self.rtcp:
            reports = parse_rtcp(data)
            if isinstance(reports, RtpError):  # RTP on the wrong port, garbage: dropped
                self.dropped += 1
                continue
            self.received += 1
            if self.stream.receive_rtcp(reports, self.now()):
                log.info("sip call %s: RTCP BYE from the far end", self.name)
            if host == self.stream.remote[0] and self.stream.symmetric:
                self._latched = (host, port)
