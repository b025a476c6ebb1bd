"""DTMF over RTP as named telephone events (RFC 4733 §2, §3), both ways.

An event payload is four bytes: the event code, the end bit, the volume (dBm0, negated) and the
duration so far in timestamp units. A digit is a run of packets sharing one RTP timestamp (its
start): the first has the marker bit, the duration grows with each, and the last one (the end
bit set) is sent three times, in case one is lost.

Sending: :func:`digit_packets` gives the payloads for one digit, one per packet time; the
sender (:class:`~transports.rtp.stream.RtpSender`) puts them on the wire with the stream's
SSRC and sequence numbers and the digit's start timestamp.

Receiving: :class:`DtmfReceiver` turns packets into :class:`Digit` events, one per digit:

=====  ======================================================================  ============
rule   arriving event packet                                                   result
=====  ======================================================================  ============
D1     the first end packet of a digit                                         a Digit
D2     more packets of a digit already reported (redundant ends, reordered     dropped
       updates)
D3     a new digit (another timestamp) while the last one never ended          the last is
       (its end packets all lost)                                              reported
D4     a pending digit that saw no packet for ``timeout`` timestamp units      a Digit, by
       (:meth:`DtmfReceiver.expire`)                                           expire()
D5     a payload shorter than 4 bytes, or an event outside 0-15 (not DTMF)     dropped
=====  ======================================================================  ============
"""

from __future__ import annotations

import struct

import msgspec

from transports.rtp.packet import RtpPacket

__all__ = ["EVENTS", "Digit", "DtmfReceiver", "EventPayload", "digit_packets"]

#: DTMF digits by event code (RFC 4733 §3.2)
EVENTS = "0123456789*#ABCD"
_MAX_DURATION = 0xFFFF


class EventPayload(msgspec.Struct, frozen=True):
    event: int
    end: bool
    volume: int  # 0-63, as -dBm0
    duration: int  # timestamp units

    def __bytes__(self) -> bytes:
        return struct.pack(
            "!BBH",
            self.event,
            (0x80 if self.end else 0) | (self.volume & 0x3F),
            min(self.duration, _MAX_DURATION),
        )

    @classmethod
    def parse(cls, payload: bytes) -> EventPayload | None:
        if len(payload) < 4:
            return None
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)


class Digit(msgspec.Struct, frozen=True):
    """A DTMF digit that was pressed for ``duration`` timestamp units from ``timestamp``."""

    digit: str
    timestamp: int
    duration: int


def digit_packets(
    digit: str, *, duration: int = 800, interval: int = 160, volume: int = 10, redundancy: int = 3
) -> list[tuple[bool, bytes]]:
    """``(marker, payload)`` for each packet of one digit, one per ``interval`` (timestamp
    units; 160 is 20 ms at 8 kHz), the last repeated ``redundancy`` times. ``duration`` is
    how long the tone lasts (800: 100 ms). An unknown digit raises ``ValueError``."""
    if len(digit) != 1 or digit.upper() not in EVENTS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    event = EVENTS.index(digit.upper())
    duration = max(min(duration, _MAX_DURATION), interval)
    out: list[tuple[bool, bytes]] = []
    elapsed = interval
    while elapsed < duration:
        out.append((not out, bytes(EventPayload(event, False, volume, elapsed))))
        elapsed += interval
    end = bytes(EventPayload(event, True, volume, duration))
    out += [(not out and i == 0, end) for i in range(redundancy)]
    return out


class DtmfReceiver:
    """Digits out of the telephone-event packets of one stream (rules D1-D5)."""

    def __init__(self, *, timeout: int = 8000) -> None:
        self.timeout = timeout
        self._pending: Digit | None = None  # started, not ended
        self._last_seen = 0  # timestamp units: the pending digit's start plus duration
        self._done: list[int] = []  # start timestamps of digits already reported (last few)
        self.dropped = 0

    def receive(self, packet: RtpPacket) -> list[Digit]:
        payload = EventPayload.parse(packet.payload)
        if payload is None or payload.event >= len(EVENTS):
            self.dropped += 1  # D5
            return []
        if packet.timestamp in self._done:
            return []  # D2
        out: list[Digit] = []
        if self._pending is not None and self._pending.timestamp != packet.timestamp:
            out.append(self._finish())  # D3
        digit = Digit(EVENTS[payload.event], packet.timestamp, payload.duration)
        if self._pending is not None:
            digit = Digit(digit.digit, digit.timestamp, max(digit.duration, self._pending.duration))
        self._pending = digit
        self._last_seen = packet.timestamp + digit.duration
        if payload.end:
            out.append(self._finish())  # D1
        return out

    def expire(self, now: int) -> list[Digit]:
        """The pending digit if nothing came for it in ``timeout`` units before ``now`` (the
        stream's timestamp clock), else nothing (D4)."""
        if self._pending is not None and now - self._last_seen >= self.timeout:
            return [self._finish()]
        return []

    def _finish(self) -> Digit:
        assert self._pending is not None
        digit, self._pending = self._pending, None
        self._done = [*self._done[-7:], digit.timestamp]
        return digit
