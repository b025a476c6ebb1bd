"""One G.711 RTP call leg, sans-I/O: 20 ms frames both ways, DTMF, symmetric RTP, RTCP.

:class:`RtpStream` is driven by the adapter's media clock: feed every datagram that arrives on
the leg's port to :meth:`~RtpStream.receive` (with where it came from and when, in samples
at 8 kHz), and call :meth:`~RtpStream.tick` once per 20 ms. Each tick returns the caller's next
20 ms (PCM16, 8 kHz, silence where nothing could be played) and the datagram to send with
where to send it. RTCP read on the RTCP port goes to :meth:`~RtpStream.receive_rtcp` with its
arrival on the same clock (with rtcp-mux, :meth:`~RtpStream.receive` takes it on the RTP port).
Bot audio goes in with :meth:`~RtpStream.send_audio` (PCM16 8 kHz) and is cut into 20 ms
frames; :meth:`~RtpStream.clear` drops what is queued (barge-in: the next tick
already sends silence, so the reply stops on the wire within one frame).

=====  ======================================================================  ============
rule   event                                                                   result
=====  ======================================================================  ============
T1     an RTP packet of the negotiated codec                                   jitter buffer
T2     a telephone-event packet (the negotiated type); an audio packet         Digit events
       past a digit whose end packets were all lost (D4, on its timestamp)
T3     any other payload type, or a packet that does not parse                 dropped,
                                                                               counted
T4     the first valid packet from an address other than the one in the SDP    we send there
       (symmetric RTP, behind NAT: RFC 4961); later, a new port on that host   from now on
       (a NAT rebinding). ``symmetric`` False: never (we send to the SDP's
       address only, and take packets from any address)
T4b    once latched, a packet from another host                                dropped,
                                                                               counted
T5     RTCP BYE                                                                RtcpBye
T5b    an RTCP sender report (SR) from the source we report on                 kept: our
                                                                               next block's
                                                                               LSR and DLSR
T6     a tick with bot audio queued                                            that audio
T7     a tick with none (the bot is quiet)                                     comfort
                                                                               silence (or
                                                                               nothing when
                                                                               ``comfort`` is
                                                                               False)
T8     a tick while a DTMF digit is being sent                                 its event
                                                                               packet, not
                                                                               audio
T8b    a tick in the gap between two digits of :meth:`~RtpStream.send_digits`  comfort
       (whose digits wait for the bot audio queued before them)                silence; bot
                                                                               audio waits
T9     :meth:`~RtpStream.renegotiate` (a re-offer agreed): another codec       sent from the
       (PCMU <-> PCMA) or telephone-event type; another address in the SDP     next tick;
       sends there and latches afresh (T4); what the jitter buffer holds       decoded as it
       plays with the codec it came in                                         came
T10    a tick while ``sending`` is False (the far end holds the call)          nothing; its
                                                                               20 ms of bot
                                                                               audio dropped,
                                                                               the timestamp
                                                                               goes on, the
                                                                               sequence not
=====  ======================================================================  ============
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from transports.g711 import (
    ALAW_ENCODE,
    ULAW_ENCODE,
    alaw_to_pcm16,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)
from transports.rtp.dtmf import Digit, DtmfReceiver, digit_packets
from transports.rtp.jitter import JitterBuffer
from transports.rtp.packet import (
    Bye,
    ReceiverReport,
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

__all__ = [
    "DIGIT_GAP_SAMPLES",
    "DIGIT_SAMPLES",
    "FRAME_SAMPLES",
    "Address",
    "RtcpBye",
    "RtpStream",
    "StreamStats",
]

#: samples (and timestamp units) in one 20 ms G.711 frame at 8 kHz
FRAME_SAMPLES = 160
#: how long :meth:`RtpStream.send_digits` plays each digit, and the quiet after it (samples):
#: 100 ms each, as an auto-dialler keys (ITU-T Q.24 asks for 40 ms at least)
DIGIT_SAMPLES = 800
DIGIT_GAP_SAMPLES = 800
_FRAME_BYTES = 2 * FRAME_SAMPLES
_RATE = 8000  # G.711's clock: samples (and timestamp units) a second
Address = tuple[str, int]
_CODECS = {0: (pcm16_to_ulaw, ulaw_to_pcm16), 8: (pcm16_to_alaw, alaw_to_pcm16)}
_SILENCE = {0: bytes([int(ULAW_ENCODE[0])]), 8: bytes([int(ALAW_ENCODE[0])])}


class RtcpBye(msgspec.Struct, frozen=True):
    """The far end said (in RTCP) that it stops sending."""

    ssrcs: tuple[int, ...]
    reason: str


class StreamStats(msgspec.Struct):
    sent_packets: int = 0
    sent_octets: int = 0
    received_packets: int = 0
    dropped: int = 0  # T3
    last_drop: str = ""


class RtpStream:
    """One leg: codec payload type 0 (PCMU) or 8 (PCMA), optionally a telephone-event type.

    ``ssrc``, ``sequence`` and ``timestamp`` are the first values we send with (the adapter
    draws them at random, RFC 3550 §5.1); ``remote`` is the address from the far end's SDP.
    """

    def __init__(
        self,
        payload_type: int,
        *,
        remote: Address,
        ssrc: int,
        sequence: int = 0,
        timestamp: int = 0,
        dtmf: int | None = None,
        comfort: bool = True,
        jitter: JitterBuffer | None = None,
        cname: str = "voxline",
        symmetric: bool = True,
    ) -> None:
        if payload_type not in _CODECS:
            raise ValueError(f"payload type {payload_type} is not G.711")
        self.payload_type = payload_type
        self.dtmf = dtmf
        self.remote = remote
        self._signalled = remote  # the address in the far end's SDP
        self.ssrc = ssrc
        self.comfort = comfort
        self.sending = True  # T10
        self.symmetric = symmetric  # T4: send to where the far end's media comes from
        self.cname = cname
        self.jitter = jitter or JitterBuffer()
        self.stats = StreamStats()
        self._encode = _CODECS[payload_type][0]
        self._sequence = sequence & 0xFFFF
        self._timestamp = timestamp & 0xFFFFFFFF
        self._queued = bytearray()  # bot audio, PCM16 8 kHz
        #: DTMF payloads still to send (None: a quiet tick between two digits, T8b)
        self._events: list[tuple[bool, bytes] | None] = []
        self._ahead = 0  # bytes of bot audio that go out before the digits queued (T8b)
        self._event_timestamp = 0
        self._talking = False
        self._flush = False
        self._latched = False
        self._digits = DtmfReceiver()
        #: T5b: the far end's last SR: its SSRC, the middle 32 bits of its NTP time (LSR), and
        #: when it arrived (samples at 8 kHz, the clock of ``arrival``)
        self._last_sr: tuple[int, int, int] | None = None

    # -- inbound ---------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address, arrival: int) -> list[Digit | RtcpBye]:
        """One datagram from ``source``; ``arrival`` in samples at 8 kHz (any origin)."""
        if is_rtcp(data):
            reports = parse_rtcp(data)
            if isinstance(reports, RtpError):
                return self._drop(f"RTCP {reports.rule}: {reports.reason}")
            return list(self.receive_rtcp(reports, arrival))
        packet = parse_rtp(data)
        if isinstance(packet, RtpError):
            return self._drop(f"{packet.rule}: {packet.reason}")
        if packet.payload_type not in (self.payload_type, self.dtmf):
            return self._drop(f"payload type {packet.payload_type}")
        if self._latched and source[0] != self.remote[0]:
            return self._drop(f"from another host than {self.remote[0]}")  # T4b
        self.stats.received_packets += 1
        if self.symmetric:
            self.remote, self._latched = source, True  # T4
        if packet.payload_type == self.dtmf:
            return list(self._digits.receive(packet))
        self.jitter.push(packet, arrival)
        return list(self._digits.expire(packet.timestamp))  # a digit whose ends were lost

    def receive_rtcp(self, reports: Sequence[RtcpPacket], arrival: int) -> list[RtcpBye]:
        """A compound RTCP packet's reports, parsed, that arrived at ``arrival`` (samples at
        8 kHz, the clock of :meth:`receive`'s): T5, T5b."""
        for report in reports:
            if isinstance(report, SenderReport):  # T5b: RFC 3550 §6.4.1's LSR
                self._last_sr = (report.ssrc, (report.ntp_time >> 16) & 0xFFFFFFFF, arrival)
        return [RtcpBye(r.ssrcs, r.reason) for r in reports if isinstance(r, Bye)]

    def _drop(self, reason: str) -> list[Digit | RtcpBye]:
        self.stats.dropped += 1
        self.stats.last_drop = reason
        return []

    # -- outbound --------------------------------------------------------------------------

    def send_audio(self, pcm: bytes) -> None:
        """Queue bot audio (PCM16 little-endian, 8 kHz mono). It goes out in whole 20 ms
        frames; a last partial frame waits for :meth:`flush`."""
        if len(pcm) % 2:
            raise ValueError("PCM16 needs an even number of bytes")
        self._queued += pcm

    def flush(self) -> None:
        """The reply ended: its last partial frame goes out padded with silence."""
        self._flush = bool(self._queued)

    @property
    def queued_samples(self) -> int:
        return len(self._queued) // 2

    def clear(self) -> int:
        """Drop the queued bot audio; returns how many samples were dropped."""
        dropped = self.queued_samples
        self._queued.clear()
        self._flush = False
        self._ahead = 0
        return dropped

    def send_digit(self, digit: str, duration: int = 800) -> None:
        """Send a DTMF digit (``duration`` in samples) starting at the next tick; raises
        ``ValueError`` when no telephone-event type was negotiated or for a non-digit."""
        if self.dtmf is None:
            raise ValueError("no telephone-event payload type was negotiated")
        self._events += digit_packets(digit, duration=duration, interval=FRAME_SAMPLES)

    @property
    def keying(self) -> bool:
        """Digits are still to be sent (or wait for the bot audio queued before them)."""
        return bool(self._events)

    def send_digits(
        self, digits: str, *, duration: int = DIGIT_SAMPLES, gap: int = DIGIT_GAP_SAMPLES
    ) -> None:
        """Key ``digits`` as a phone does (T8b): once the bot audio queued so far has gone
        out, each digit for ``duration`` samples (its three end packets after), then ``gap``
        samples of quiet; bot audio queued meanwhile waits for the last digit. Raises
        ``ValueError`` (and queues nothing) when no telephone-event type was negotiated or
        for a non-digit."""
        if self.dtmf is None:
            raise ValueError("no telephone-event payload type was negotiated")
        events: list[tuple[bool, bytes] | None] = []
        for digit in digits:
            events += digit_packets(digit, duration=duration, interval=FRAME_SAMPLES)
            events += [None] * max(1, -(-gap // FRAME_SAMPLES))
        if not self._events:
            self._ahead = len(self._queued)
        self._events += events

    def tick(self) -> tuple[bytes, bytes | None, Address]:
        """One 20 ms step: the caller's next frame (PCM16 8 kHz, 320 bytes), the datagram to
        send (None: nothing) and where to send it."""
        played = self.jitter.pop()
        frame = b""
        if played is not None and played.payload_type in _CODECS:  # T9: as it came
            frame = _CODECS[played.payload_type][1](played.payload)
        frame = (frame + b"\x00" * _FRAME_BYTES)[:_FRAME_BYTES]
        return frame, self._next_packet(), self.remote

    def renegotiate(self, payload_type: int, *, remote: Address, dtmf: int | None) -> None:
        """A re-offer agreed ``payload_type`` (0 or 8), ``dtmf`` and the far end's SDP address
        ``remote`` (T9): the sequence, timestamp and SSRC go on as they were."""
        if payload_type not in _CODECS:
            raise ValueError(f"payload type {payload_type} is not G.711")
        self.payload_type, self.dtmf = payload_type, dtmf
        self._encode = _CODECS[payload_type][0]
        if remote != self._signalled:  # moved: send to the new address, latch again
            self.remote = self._signalled = remote
            self._latched = False

    def _next_packet(self) -> bytes | None:
        packet: bytes | None
        audio = len(self._queued) >= _FRAME_BYTES or (bool(self._queued) and self._flush)
        if not audio:
            self._ahead = 0  # what is left is no whole frame: the digits go first
        if not self.sending:  # T10: the media clock goes on, the sequence waits
            del self._queued[:_FRAME_BYTES]
            self._flush = self._flush and bool(self._queued)
            self._events.clear()
            self._talking = False
            packet = None
        elif self._events and not self._ahead:
            event = self._events.pop(0)
            if event is None:  # T8b: the quiet between two digits
                packet = self._quiet()
            else:  # T8: a digit keeps its start timestamp across its packets
                marker, payload = event
                if marker:
                    self._event_timestamp = self._timestamp
                packet = self._packet(self.dtmf or 0, payload, marker, self._event_timestamp)
        elif audio:  # T6
            chunk = bytes(self._queued[:_FRAME_BYTES]).ljust(_FRAME_BYTES, b"\x00")
            del self._queued[:_FRAME_BYTES]
            self._ahead = max(0, min(self._ahead - _FRAME_BYTES, len(self._queued)))
            self._flush = self._flush and bool(self._queued)
            packet = self._packet(
                self.payload_type, self._encode(chunk), not self._talking, self._timestamp
            )
            self._talking = True
        else:  # T7
            packet = self._quiet()
        self._timestamp = (self._timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        return packet

    def _quiet(self) -> bytes | None:
        """Comfort silence (``None`` without ``comfort``): the bot is quiet."""
        self._talking = False
        if not self.comfort:
            return None
        silence = _SILENCE[self.payload_type] * FRAME_SAMPLES
        return self._packet(self.payload_type, silence, False, self._timestamp)

    def _packet(self, payload_type: int, payload: bytes, marker: bool, timestamp: int) -> bytes:
        packet = RtpPacket(payload_type, self._sequence, timestamp, self.ssrc, payload, marker)
        self._sequence = (self._sequence + 1) & 0xFFFF
        self.stats.sent_packets += 1
        self.stats.sent_octets += len(payload)
        return bytes(packet)

    # -- RTCP ------------------------------------------------------------------------------

    def rtcp(self, ntp_time: int, *, now: int, bye: str | None = None) -> bytes:
        """A compound RTCP packet: SR (RR before we sent anything) with a report block for
        the far end, SDES CNAME, and BYE when ``bye`` is given. ``ntp_time`` is the 64-bit
        NTP wall time the adapter read (RFC 3550 §4); ``now`` the time it goes, on the clock
        of ``arrival`` (samples at 8 kHz). The block's LSR and DLSR are those of the far
        end's last SR (T5b; RFC 3550 §6.4.1), 0 when none came from the source reported on."""
        last_sr = delay = 0
        if self._last_sr is not None and self._last_sr[0] == self.jitter.ssrc:
            _, last_sr, arrived = self._last_sr
            delay = max(0, now - arrived) * 65536 // _RATE  # in 1/65536 s
        block = self.jitter.report(last_sr=last_sr, delay_since_last_sr=delay)
        blocks = (block,) if block is not None else ()
        first: RtcpPacket
        if self.stats.sent_packets:
            first = SenderReport(
                self.ssrc,
                ntp_time,
                self._timestamp,
                self.stats.sent_packets,
                self.stats.sent_octets,
                blocks,
            )
        else:
            first = ReceiverReport(self.ssrc, blocks)
        packets: list[RtcpPacket] = [first, Sdes(self.ssrc, self.cname)]
        if bye is not None:
            packets.append(Bye((self.ssrc,), bye))
        return build_rtcp(*packets)
