"""Fuzz target for the WebRTC offer (``POST /v1/webrtc/offer``).

``parse_offer`` returns an :class:`~transports.webrtc.OfferRequest` or raises
:class:`~pipeline.errors.ProtocolError`; an offer it accepts goes on to aiortc's SDP parser when
the call applies it (agent/webrtc_call.py), which must then read it without an error.
"""

from __future__ import annotations

import json

import aiortc.sdp

from bench.fuzz.seeds import json_fields, text_values
from bench.fuzz.target import Target, kind
from pipeline.errors import ProtocolError
from transports.webrtc import parse_offer

__all__ = ["TARGETS"]


_OFFER = "\r\n".join(
    (
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=rtpmap:111 opus/48000/2",
        "a=sendrecv",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuv",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:actpass",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "",
    )
)


def webrtc_offer(data: bytes) -> list[str]:
    """The offer's first byte picks the content type (and ``r``, a room in the query)."""
    content_type = "application/json" if data[:1] == b"{" else "application/sdp"
    try:
        offer = parse_offer(content_type, data, {"room": "r"} if data[:1] == b"r" else None)
    except ProtocolError as error:
        return [kind("ProtocolError", str(error))]
    aiortc.sdp.SessionDescription.parse(offer.sdp)
    return []


def webrtc_seeds() -> list[bytes]:
    offer = {"type": "offer", "sdp": _OFFER, "agent": "default", "transfer": True}
    return [
        _OFFER.encode(),
        json.dumps(offer).encode(),
        json.dumps({**offer, "language": "fr"}).encode(),
        *json_fields("offer", "sdp"),
        _OFFER.replace("opus/48000/2", "PCMU/8000").encode(),
        _OFFER.replace("m=audio", "m=video").encode(),
        *text_values(),
    ]


TARGETS = (
    Target(
        "webrtc_offer",
        "parse_offer: ProtocolError; aiortc then reads what it accepted",
        webrtc_offer,
        webrtc_seeds,
        max_len=8192,
    ),
)
