"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for one G.711 audio stream.

:func:`parse_sdp` reads a session description or returns an :class:`SdpError`;
``str(description)`` writes one. :func:`answer_offer` answers a caller's offer,
:func:`make_offer` and :func:`accept_answer` are the other side (outbound calls, re-INVITEs we
send). What both sides agreed is a :class:`Negotiated`: the codec, the telephone-event payload
type, where to send RTP and which way media flows.

Rules (ids are cited by the tests):

=====  ======================================================================  ============
rule   input                                                                   result
=====  ======================================================================  ============
S1     not ``x=value`` lines; no ``v=0`` first; no ``o=`` with six fields;     SdpError
       no ``s=``; an ``m=`` line that is not ``media port proto fmt...``;      (400)
       a port or payload type out of range; no ``c=`` for an active stream
S2     the codec is the first of the offer's formats that we support (the      answered
       caller's order), PCMU (0) and PCMA (8) known by number or by rtpmap
S3     ``telephone-event/8000`` offered: answered with the offer's payload     answered
       type (RFC 4733); not offered: DTMF goes by SIP INFO only
S4     offered direction (the m-line's, else the session's) -> answered:      answered
       sendrecv -> sendrecv, sendonly -> recvonly, recvonly -> sendonly,
       inactive -> inactive; ``c=0.0.0.0`` (RFC 2543 hold) counts as the
       offerer not receiving
S5     one m-line answered per offered m-line, in order: the first audio       answered
       RTP/AVP stream we can take is used, every other one gets port 0
S6     no offered audio stream with a codec we support                         488
S7     ``a=rtcp-mux`` offered (RFC 5761): RTCP shares the RTP port; else RTCP   answered
       goes to ``a=rtcp``'s port (RFC 3605), else to the RTP port + 1          (rtcp-mux
                                                                               echoed)
=====  ======================================================================  ============

``Negotiated.direction`` is ours: ``sendonly`` means we send and do not receive.
"""

from __future__ import annotations

import re

import msgspec

from transports.sip.message import is_number

__all__ = [
    "PCMA",
    "PCMU",
    "Codec",
    "Media",
    "Negotiated",
    "Origin",
    "SdpError",
    "SessionDescription",
    "accept_answer",
    "answer_offer",
    "make_offer",
    "parse_sdp",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly"}
_REVERSE["inactive"] = "inactive"
_HOLD_ADDRESS = "0.0.0.0"


class Codec(msgspec.Struct, frozen=True):
    payload_type: int
    name: str
    clock_rate: int = 8000

    def rtpmap(self) -> str:
        return f"{self.payload_type} {self.name}/{self.clock_rate}"


PCMU = Codec(0, "PCMU")
PCMA = Codec(8, "PCMA")
_STATIC = {0: PCMU, 8: PCMA}
TELEPHONE_EVENT = "telephone-event"


class Origin(msgspec.Struct, frozen=True):
    username: str = "-"
    session_id: int = 0
    version: int = 0
    address: str = "127.0.0.1"

    def __str__(self) -> str:
        return f"{self.username} {self.session_id} {self.version} IN IP4 {self.address}"


class Media(msgspec.Struct, frozen=True):
    """One m-line with its attributes (``(name, value)`` in order, value ``""`` for flags)."""

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str) -> list[str]:
        return [value for n, value in self.attributes if n == name]

    def codecs(self) -> dict[int, Codec]:
        """Payload type -> codec, from static numbers and ``a=rtpmap``."""
        found = {pt: _STATIC[pt] for pt in self.payload_types() if pt in _STATIC}
        for value in self.attribute("rtpmap"):
            match = re.match(r"^([0-9]{1,3})\s+([^/\s]+)/([0-9]{1,10})", value)
            if match and int(match.group(1)) in self.payload_types():
                pt = int(match.group(1))
                found[pt] = Codec(pt, match.group(2), int(match.group(3)))
        return found

    def payload_types(self) -> list[int]:
        return [int(f) for f in self.formats if is_number(f)]

    @property
    def direction(self) -> str:
        flags = [n for n, _ in self.attributes if n in DIRECTIONS]
        return flags[-1] if flags else "sendrecv"

    @property
    def ptime(self) -> int:
        values = self.attribute("ptime")
        return int(values[0]) if values and is_number(values[0]) else 20


class SessionDescription(msgspec.Struct, frozen=True):
    origin: Origin
    name: str = "-"
    connection: str | None = None
    media: tuple[Media, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()

    def connection_of(self, media: Media) -> str | None:
        return media.connection or self.connection

    def __str__(self) -> str:
        lines = ["v=0", f"o={self.origin}", f"s={self.name}"]
        if self.connection:
            lines.append(f"c=IN IP4 {self.connection}")
        lines.append("t=0 0")
        lines += [_attribute(a) for a in self.attributes]
        for media in self.media:
            lines.append(f"m={media.kind} {media.port} {media.proto} {' '.join(media.formats)}")
            if media.connection:
                lines.append(f"c=IN IP4 {media.connection}")
            lines += [_attribute(a) for a in media.attributes]
        return "\r\n".join(lines) + "\r\n"

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")


def _attribute(attribute: tuple[str, str]) -> str:
    name, value = attribute
    return f"a={name}:{value}" if value else f"a={name}"


class SdpError(msgspec.Struct, frozen=True):
    """Why a description or an offer was refused, with the SIP status to answer."""

    rule: str
    reason: str
    status: int = 400


class Negotiated(msgspec.Struct, frozen=True):
    """What offer and answer agreed, from our side."""

    codec: Codec
    dtmf: int | None  # telephone-event payload type
    address: str  # where to send RTP (before symmetric RTP corrects it)
    port: int
    direction: str  # ours
    ptime: int = 20  # the packet time the far end asked to receive (a wish: we send 20 ms)
    rtcp_mux: bool = False  # S7: RTCP on the RTP port, both ways
    rtcp_port: int = 0  # S7: ``a=rtcp``'s port (0: none given)

    @property
    def rtcp_to(self) -> int:
        """The far end's RTCP port without rtcp-mux (S7): ``a=rtcp``'s, else RTP's + 1."""
        return self.rtcp_port or min(self.port + 1, 65_535)

    @property
    def sending(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receiving(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


# -- parsing --------------------------------------------------------------------------------


class _Section:
    """An m-line (or the session part, ``kind == ""``) while it is being read."""

    def __init__(
        self, kind: str = "", port: int = 0, proto: str = "", formats: tuple[str, ...] = ()
    ) -> None:
        self.kind, self.port, self.proto, self.formats = kind, port, proto, formats
        self.connection: str | None = None
        self.attributes: list[tuple[str, str]] = []

    def media(self) -> Media:
        return Media(
            self.kind, self.port, self.proto, self.formats, self.connection, tuple(self.attributes)
        )


def parse_sdp(data: bytes | str) -> SessionDescription | SdpError:
    """A session description, or an :class:`SdpError` (S1) saying what is wrong."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        return SdpError("S1", "not UTF-8")
    lines = [line for line in re.split(r"\r?\n", text) if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        return SdpError("S1", "does not start with v=0")
    origin: Origin | None = None
    name: str | None = None
    session = _Section()
    sections: list[_Section] = []
    for line in lines[1:]:
        kind, equals, value = line.partition("=")
        if not equals or len(kind) != 1 or not kind.isalpha():
            return SdpError("S1", f"not a type=value line: {line[:60]!r}")
        value = value.strip()
        target = sections[-1] if sections else session
        if kind == "o":
            fields = value.split()
            if len(fields) != 6 or not is_number(fields[1]) or not is_number(fields[2]):
                return SdpError("S1", f"bad o= line: {value[:60]!r}")
            origin = Origin(fields[0], int(fields[1]), int(fields[2]), fields[5])
        elif kind == "s":
            name = value
        elif kind == "c":
            fields = value.split()
            if len(fields) != 3 or fields[0] != "IN" or fields[1] not in ("IP4", "IP6"):
                return SdpError("S1", f"bad c= line: {value[:60]!r}")
            target.connection = fields[2].split("/")[0]
        elif kind == "m":
            fields = value.split()
            port = fields[1].split("/")[0] if len(fields) > 1 else ""
            if len(fields) < 4 or not is_number(port) or int(port) > 65535:
                return SdpError("S1", f"bad m= line: {value[:60]!r}")
            formats = tuple(fields[3:])
            if fields[2].startswith("RTP/") and not all(
                is_number(f) and int(f) < 128 for f in formats
            ):
                return SdpError("S1", f"bad payload types: {value[:60]!r}")
            sections.append(_Section(fields[0], int(port), fields[2], formats))
        elif kind == "a":
            attribute_name, _, attribute_value = value.partition(":")
            target.attributes.append((attribute_name.strip(), attribute_value.strip()))
    if origin is None or name is None:
        return SdpError("S1", "no o= line" if origin is None else "no s= line")
    for section in sections:
        if section.port and not (section.connection or session.connection):
            return SdpError("S1", f"no c= for the {section.kind} stream")
    return SessionDescription(
        origin=origin,
        name=name,
        connection=session.connection,
        media=tuple(section.media() for section in sections),
        attributes=tuple(session.attributes),
    )


# -- offer / answer -------------------------------------------------------------------------


def _media_attributes(
    codecs: list[Codec], dtmf: int | None, direction: str, ptime: int
) -> tuple[tuple[str, str], ...]:
    attributes: list[tuple[str, str]] = [("rtpmap", codec.rtpmap()) for codec in codecs]
    if dtmf is not None:
        attributes += [("rtpmap", f"{dtmf} {TELEPHONE_EVENT}/8000"), ("fmtp", f"{dtmf} 0-16")]
    attributes += [("ptime", str(ptime)), (direction, "")]
    return tuple(attributes)


def make_offer(
    origin: Origin,
    port: int,
    *,
    codecs: tuple[Codec, ...] = (PCMU, PCMA),
    dtmf: int | None = 101,
    direction: str = "sendrecv",
    ptime: int = 20,
) -> SessionDescription:
    """Our offer: one audio stream at ``origin.address``:``port``. For a re-offer (hold,
    codec change) pass the same session id with ``origin.version`` one higher."""
    formats = [str(c.payload_type) for c in codecs] + ([str(dtmf)] if dtmf is not None else [])
    audio = Media(
        "audio",
        port,
        "RTP/AVP",
        tuple(formats),
        attributes=_media_attributes(list(codecs), dtmf, direction, ptime),
    )
    return SessionDescription(origin, "Voxline", origin.address, (audio,))


def _telephone_event(codecs: dict[int, Codec]) -> int | None:
    """The payload type of ``telephone-event/8000`` (S3), if offered."""
    found = (pt for pt, c in codecs.items() if c.name.lower() == TELEPHONE_EVENT)
    return next((pt for pt in found if codecs[pt].clock_rate == 8000), None)


def _rtcp_port(media: Media) -> int:
    """``a=rtcp``'s port (S7), 0 when there is none (or it is not a port)."""
    values = media.attribute("rtcp")
    port = values[0].split()[0] if values and values[0] else ""
    return int(port) if is_number(port) and 0 < int(port) <= 65_535 else 0


def _offered_direction(offer: SessionDescription, media: Media) -> str:
    direction = media.direction
    if not any(name in DIRECTIONS for name, _ in media.attributes):
        session = [name for name, _ in offer.attributes if name in DIRECTIONS]
        direction = session[-1] if session else direction
    if offer.connection_of(media) == _HOLD_ADDRESS:  # S4: RFC 2543 hold
        return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)
    return direction


def answer_offer(
    offer: SessionDescription,
    origin: Origin,
    port: int,
    *,
    codecs: tuple[Codec, ...] = (PCMU, PCMA),
    hold: bool = False,
) -> tuple[SessionDescription, Negotiated] | SdpError:
    """Our answer to ``offer`` and what it agrees (S2-S6). ``hold``: we stop sending (our
    side answers ``recvonly``/``inactive``)."""
    names = {c.name.upper(): c for c in codecs}
    answered: list[Media] = []
    chosen: Negotiated | None = None
    for media in offer.media:
        offered = media.codecs()
        pick = next(
            (
                offered[pt]
                for pt in media.payload_types()
                if pt in offered
                and offered[pt].name.upper() in names
                and offered[pt].clock_rate == 8000
            ),
            None,
        )
        usable = media.kind == "audio" and media.proto == "RTP/AVP" and media.port != 0
        if chosen is not None or not usable or pick is None:
            answered.append(Media(media.kind, 0, media.proto, media.formats[:1]))
            continue
        dtmf = _telephone_event(offered)
        ours = _REVERSE[_offered_direction(offer, media)]
        if hold:
            ours = {"sendrecv": "recvonly", "sendonly": "inactive"}.get(ours, ours)
        address = offer.connection_of(media) or _HOLD_ADDRESS
        mux = bool(media.attribute("rtcp-mux"))
        chosen = Negotiated(
            pick, dtmf, address, media.port, ours, media.ptime, mux, _rtcp_port(media)
        )
        formats = (str(pick.payload_type), *([str(dtmf)] if dtmf is not None else []))
        attributes = _media_attributes([pick], dtmf, ours, 20)  # what we like to receive
        attributes += (("rtcp-mux", ""),) if mux else ()
        answered.append(Media("audio", port, "RTP/AVP", formats, attributes=attributes))
    if chosen is None:
        return SdpError("S6", "no audio stream with a codec we support", 488)
    return SessionDescription(origin, "Voxline", origin.address, tuple(answered)), chosen


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated | SdpError:
    """What the far end's ``answer`` to our ``offer`` agrees: the first of its codecs that we
    offered, its telephone-event type, and our direction (the reverse of its)."""
    if not offer.media or len(answer.media) != len(offer.media):
        return SdpError("S5", "the answer's m-lines do not match the offer's", 488)
    ours = offer.media[0].codecs()
    for media in answer.media:
        if media.kind != "audio" or media.port == 0:
            continue
        theirs = media.codecs()
        for pt in media.payload_types():
            codec = theirs.get(pt)
            if codec is None or codec.name.lower() == TELEPHONE_EVENT:
                continue
            if any(c.name.upper() == codec.name.upper() for c in ours.values()):
                dtmf = _telephone_event(theirs)
                address = answer.connection_of(media) or _HOLD_ADDRESS
                direction = _REVERSE[_offered_direction(answer, media)]
                mux = bool(media.attribute("rtcp-mux") and offer.media[0].attribute("rtcp-mux"))
                rtcp = _rtcp_port(media)
                return Negotiated(
                    codec, dtmf, address, media.port, direction, media.ptime, mux, rtcp
                )
    return SdpError("S6", "the answer has no codec we offered", 488)
