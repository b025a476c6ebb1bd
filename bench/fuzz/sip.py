"""Fuzz targets for SIP calls: SDP offers, SIP messages (with the bodies, challenges and URIs
read from them) and RTP/RTCP datagrams.

The contracts, as the modules document them:

- ``parse_sdp`` returns a description or an ``SdpError``; what it returns reads back from its
  own text, and ``answer_offer`` answers it or returns an ``SdpError``;
- ``parse_message`` returns a request, a response or a ``ParseError``; on what it returned the
  parsed values (``cseq``, ``vias``, ``from_addr`` ...) do not raise (rule M5), nor do the
  readers of DTMF and sipfrag bodies, digest challenges and request URIs; a
  ``StreamFramer`` fed the same bytes in pieces gives messages or ``ParseError``s;
- ``RtpStream.receive`` never raises (a bad datagram is counted as dropped), nor do
  ``parse_rtp``/``parse_rtcp`` (an ``RtpError``).
"""

from __future__ import annotations

from bench.fuzz.seeds import BIG_INT, BIGGER_INT, text_values
from bench.fuzz.target import Target, kind
from transports.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtpError,
    RtpPacket,
    Sdes,
    SenderReport,
    build_rtcp,
    parse_rtcp,
    parse_rtp,
)
from transports.rtp.stream import RtpStream
from transports.sip.bodies import dtmf_digit, sipfrag_status
from transports.sip.digest import pick_challenge
from transports.sip.message import (
    ParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_message,
)
from transports.sip.sdp import Origin, SdpError, answer_offer, parse_sdp
from transports.sip.uri import parse_target

__all__ = ["TARGETS"]

_OURS = Origin("voxline", 1, 1, "127.0.0.1")


# -- SDP ----------------------------------------------------------------------------------------


def sdp(data: bytes) -> list[str]:
    offer = parse_sdp(data)
    if isinstance(offer, SdpError):
        return [kind(f"SdpError {offer.rule}", offer.reason)]
    again = parse_sdp(str(offer))  # what we write of it reads back
    if isinstance(again, SdpError):
        raise AssertionError(f"a parsed description does not read back: {again}")
    answered = answer_offer(offer, _OURS, 40000)
    if isinstance(answered, SdpError):
        return [kind(f"SdpError {answered.rule}", answered.reason)]
    str(answered[0])
    return []


_OFFER = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.4\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.4\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 96 8 0 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)


def sdp_seeds() -> list[bytes]:
    offer = _OFFER.encode()
    return [
        offer,
        offer.replace(b"c=IN IP4 192.0.2.4", b"c=IN IP4 0.0.0.0").replace(b"sendrecv", b"sendonly"),
        offer + b"m=video 0 RTP/AVP 31\r\n",
        offer.replace(b"2890844526", BIGGER_INT, 1),
        offer.replace(b"a=ptime:20", b"a=ptime:" + BIG_INT),
        offer.replace(b"96 8 0 101", b"0 " + BIGGER_INT),
        offer.replace(b"49170", "\u00b2\u0663".encode()),  # digits by str.isdigit, not int()
        offer.replace(b"\r\n", b"\n"),
        *text_values(),
    ]


# -- SIP ----------------------------------------------------------------------------------------


def _sip_values(message: object) -> None:
    """Everything M5 promises is safe on a parsed message."""
    assert isinstance(message, SipRequest | SipResponse)
    _ = (message.call_id, message.cseq, message.vias, message.from_addr, message.to_addr)
    _ = message.contact
    if isinstance(message, SipRequest):
        _ = message.max_forwards
        parse_target(message.uri)
    content_type = message.get("Content-Type").lower()
    dtmf_digit(content_type, message.body)
    sipfrag_status(message.body)
    if content_type == "application/sdp":
        sdp(message.body)
    pick_challenge(message.get_all("WWW-Authenticate"))
    pick_challenge(message.get_all("Proxy-Authenticate"), proxy=True)
    bytes(message)


def sip(data: bytes) -> list[str]:
    kinds: list[str] = []
    for stream in (False, True):
        message = parse_message(data, stream=stream)
        if isinstance(message, ParseError):
            kinds.append(kind(f"ParseError {message.rule}", message.reason))
        else:
            _sip_values(message)
    framer = StreamFramer()
    for start in range(0, len(data), 97):  # a TCP stream cut anywhere
        for framed in framer.feed(data[start : start + 97]):
            if isinstance(framed, ParseError):
                kinds.append(kind(f"ParseError {framed.rule} (stream)", framed.reason))
            else:
                _sip_values(framed)
    return kinds


_INVITE = (
    b"INVITE sip:bot@voxline.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@atlanta.test>;tag=1928301774\r\n'
    b"To: <sip:bot@voxline.test>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.test\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.4>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(_OFFER)).encode() + b"\r\n"
    b"\r\n" + _OFFER.encode()
)
_RESPONSE = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
    b"From: <sip:bot@voxline.test>;tag=1\r\n"
    b"To: <sip:pbx@voxline.test>;tag=2\r\n"
    b"Call-ID: reg1\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="pbx", nonce="abc", qop="auth", algorithm=SHA-256\r\n'
    b"Content-Type: message/sipfrag\r\n"
    b"Content-Length: 16\r\n"
    b"\r\n"
    b"SIP/2.0 200 OK\r\n"
)
_INFO = (
    _INVITE.split(b"\r\n\r\n")[0]
    .replace(b"INVITE", b"INFO")
    .replace(b"application/sdp", b"application/dtmf-relay")
    .replace(b"Content-Length: " + str(len(_OFFER)).encode(), b"Content-Length: 24")
    + b"\r\n\r\nSignal=5\r\nDuration=160\r\n"
)


def sip_seeds() -> list[bytes]:
    return [
        _INVITE,
        _RESPONSE,
        _INFO,
        _INVITE.replace(b"\r\n", b"\n"),
        _INVITE.replace(b"314159", BIGGER_INT),
        _INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: " + BIGGER_INT),
        _INVITE.replace(b"Max-Forwards: 70", "Max-Forwards: \u00b2".encode()),
        _INVITE.replace(b"5060", BIGGER_INT),
        _INVITE + _RESPONSE,
        _INVITE.replace(b"Call-ID", b"i").replace(b"Via:", b"v:"),
        _INVITE.replace(b"Via: ", b"Via: " + b"SIP/2.0/UDP a;branch=b, " * 300),
        *text_values(),
    ]


# -- RTP and RTCP -------------------------------------------------------------------------------


def rtp(data: bytes) -> list[str]:
    stream = RtpStream(0, remote=("127.0.0.1", 4000), ssrc=1, dtmf=101)
    kinds: list[str] = []
    datagrams = data.split(b"\xff\xfe\xfd")
    for number, datagram in enumerate(datagrams):
        for parsed in (parse_rtp(datagram), parse_rtcp(datagram)):
            if isinstance(parsed, RtpError):
                kinds.append(kind("RtpError", parsed.rule))
        dropped = stream.stats.dropped
        stream.receive(datagram, ("127.0.0.1", 4000 + number % 2), number * 160)
        stream.tick()
        if stream.stats.dropped > dropped:
            kinds.append(kind("dropped", stream.stats.last_drop.split(":")[0]))
    stream.rtcp(0, now=len(datagrams) * 160)  # after the last arrival (an SR's DLSR)
    return kinds


def rtp_seeds() -> list[bytes]:
    block = ReportBlock(1, 0, 0, 1, 2, 3, 4)
    packets = [
        bytes(RtpPacket(0, 1, 160, 7, bytes(160))),
        bytes(RtpPacket(0, 2, 320, 7, bytes(160), marker=True, csrcs=(1, 2))),
        bytes(RtpPacket(0, 3, 480, 7, bytes(160), extension=b"\xbe\xde" + bytes(8))),
        bytes(RtpPacket(101, 4, 480, 7, bytes([5, 0x80, 0, 160]))),
        build_rtcp(SenderReport(7, 1 << 32, 160, 1, 160, (block,)), Sdes(7, "x"), Bye((7,), "bye")),
        build_rtcp(ReceiverReport(7, (block,))),
    ]
    padded = bytearray(packets[0])
    padded[0] |= 0x20
    return [*packets, b"\xff\xfe\xfd".join(packets), bytes(padded), b"\x80" * 12, b"\x80\xc8"]


TARGETS = (
    Target("sdp", "parse_sdp: SdpError; answer_offer: SdpError", sdp, sdp_seeds),
    Target("sip_message", "parse_message: ParseError; M5 values never raise", sip, sip_seeds),
    Target("rtp", "RtpStream.receive, parse_rtp/parse_rtcp: RtpError, never raise", rtp, rtp_seeds),
)
