"""A jitter buffer for one inbound RTP audio stream, and the receiver statistics RTCP reports.

The adapter calls :meth:`JitterBuffer.push` for every audio packet as it arrives (with its
arrival time in timestamp units, for the jitter estimate) and :meth:`JitterBuffer.pop` once per
packet time (every 20 ms) from its media clock. ``pop`` returns the next packet in sequence
order, or ``None`` for a slot with nothing to play (still buffering, lost, or an underrun): the
caller plays 20 ms of silence there, so the inbound timeline stays continuous.

Size: playout starts once :attr:`~JitterBuffer.depth` packets are held (default 3, 60 ms at
20 ms a packet, which is the delay the buffer adds); at most :attr:`~JitterBuffer.capacity`
packets are held (default 10, 200 ms): past that, the oldest is dropped and play moves on past
it (``overflow``), so the delay never grows beyond that.

=====  ======================================================================  ============
rule   arriving packet                                                         result
=====  ======================================================================  ============
J1     a sequence number already held, or among the last 64 played             ``duplicate``
J2     a sequence number before the next one to play, not played               ``late``
J3     a new SSRC, or a jump of more than :data:`MAX_DROPOUT` sequence         ``restart``
       numbers (the sender restarted): the buffer is emptied and starts over   (kept)
J4     more than ``capacity`` packets held: the oldest is dropped              ``overflow``
J5     a slot whose packet never came, while later ones are held               ``lost``
J6     nothing held at all when a slot is due: the buffer refills to           ``underrun``
       ``depth`` before playing again
=====  ======================================================================  ============

Sequence numbers are extended past 16 bits (RFC 3550 §A.1), so wrapping at 65535 is ordinary.
DTMF (RFC 4733) packets share the stream's sequence numbers but not its slots: the adapter
sends them to :class:`~transports.rtp.dtmf.DtmfReceiver` and their numbers show here as
``lost`` slots, which is silence, what the caller's line carries during a digit anyway.
"""

from __future__ import annotations

from collections import deque

import msgspec

from transports.rtp.packet import ReportBlock, RtpPacket

__all__ = ["MAX_DROPOUT", "JitterBuffer", "JitterStats"]

#: a forward jump in sequence numbers larger than this is a restart, not loss (RFC 3550 §A.1)
MAX_DROPOUT = 3000
_SEQ_MOD = 1 << 16


class JitterStats(msgspec.Struct):
    """Counters since the buffer was made (``restart`` keeps them)."""

    received: int = 0
    played: int = 0
    duplicate: int = 0
    late: int = 0
    lost: int = 0
    overflow: int = 0
    underrun: int = 0
    restart: int = 0


class JitterBuffer:
    def __init__(self, *, depth: int = 3, capacity: int = 10) -> None:
        if not 1 <= depth <= capacity:
            raise ValueError(f"need 1 <= depth ({depth}) <= capacity ({capacity})")
        self.depth = depth
        self.capacity = capacity
        self.stats = JitterStats()
        self.ssrc: int | None = None
        self._held: dict[int, RtpPacket] = {}
        self._played: deque[int] = deque(maxlen=64)
        self._next: int | None = None  # extended sequence number of the next slot
        self._playing = False
        self._highest: int | None = None  # highest extended sequence number seen
        self._base: int | None = None  # first extended sequence number of this source
        self._expected_prior = 0
        self._received_prior = 0
        self._received_source = 0
        self._transit: int | None = None
        self._jitter = 0.0  # RFC 3550 §6.4.1, in timestamp units

    def __len__(self) -> int:
        return len(self._held)

    def push(self, packet: RtpPacket, arrival: int) -> str | None:
        """Take an arriving packet; ``arrival`` is the receive time in timestamp units (any
        origin). Returns why it was not kept (``"duplicate"``, ``"late"``) or the event it
        caused (``"restart"``, ``"overflow"``), None when simply kept."""
        self.stats.received += 1
        event: str | None = None
        if self.ssrc != packet.ssrc and self.ssrc is not None:
            self._restart()
            event = "restart"
        self.ssrc = packet.ssrc
        sequence = self._extend(packet.sequence)
        if self._highest is not None and sequence - self._highest > MAX_DROPOUT:
            self._restart()
            self.ssrc = packet.ssrc
            sequence, event = packet.sequence, "restart"
        if self._next is not None and sequence < self._next:
            played = sequence in self._played
            self.stats.duplicate += played
            self.stats.late += not played
            return "duplicate" if played else "late"
        if sequence in self._held:
            self.stats.duplicate += 1
            return "duplicate"
        self._update_jitter(packet.timestamp, arrival)
        self._received_source += 1
        if self._base is None:
            self._base = sequence
        self._highest = sequence if self._highest is None else max(self._highest, sequence)
        self._held[sequence] = packet
        if len(self._held) > self.capacity:
            oldest = min(self._held)
            del self._held[oldest]
            self.stats.overflow += 1
            if self._next is not None:
                self._next = max(self._next, oldest + 1)
            event = "overflow"
        return event

    def pop(self) -> RtpPacket | None:
        """The packet for the slot now due, or None (buffering, ``lost``, ``underrun``)."""
        if not self._playing:
            if len(self._held) < self.depth:
                return None
            self._playing = True
            first = min(self._held)
            self._next = first if self._next is None else max(self._next, first)
        assert self._next is not None
        if not self._held:
            self.stats.underrun += 1
            self._playing = False
            return None
        packet = self._held.pop(self._next, None)
        self._next += 1
        if packet is None:
            self.stats.lost += 1
        else:
            self.stats.played += 1
            self._played.append(self._next - 1)
        return packet

    def _restart(self) -> None:
        self.stats.restart += 1
        self._held.clear()
        self._played.clear()
        self._next = self._highest = self._base = self._transit = None
        self._playing = False
        self._expected_prior = self._received_prior = self._received_source = 0
        self._jitter = 0.0

    def _extend(self, sequence: int) -> int:
        """The extended sequence number closest to the highest seen."""
        if self._highest is None:
            return sequence
        highest = self._highest
        cycles = highest - highest % _SEQ_MOD
        candidates = (cycles - _SEQ_MOD + sequence, cycles + sequence, cycles + _SEQ_MOD + sequence)
        return min(candidates, key=lambda c: abs(c - highest))

    def _update_jitter(self, timestamp: int, arrival: int) -> None:
        transit = (arrival - timestamp) % (1 << 32)
        if self._transit is not None:
            delta = abs(((transit - self._transit + (1 << 31)) % (1 << 32)) - (1 << 31))
            self._jitter += (delta - self._jitter) / 16
        self._transit = transit

    @property
    def jitter(self) -> int:
        """The interarrival jitter estimate, in timestamp units."""
        return int(self._jitter)

    def report(self, *, last_sr: int = 0, delay_since_last_sr: int = 0) -> ReportBlock | None:
        """A report block for the current source (RFC 3550 §6.4.1, §A.3), None before any
        packet; each call starts a new interval for ``fraction_lost``."""
        if self.ssrc is None or self._highest is None or self._base is None:
            return None
        expected = self._highest - self._base + 1
        lost = expected - self._received_source
        interval_expected = expected - self._expected_prior
        interval_lost = interval_expected - (self._received_source - self._received_prior)
        self._expected_prior, self._received_prior = expected, self._received_source
        fraction = (interval_lost << 8) // interval_expected if interval_lost > 0 else 0
        lost = max(min(lost, 0x7FFFFF), -0x800000)
        return ReportBlock(
            self.ssrc, fraction, lost, self._highest, self.jitter, last_sr, delay_since_last_sr
        )
