"""A call's media session across re-offers (RFC 3264 §8, RFC 6337), sans-I/O.

:class:`MediaSession` holds what one call agreed (:class:`~transports.sip.sdp.Negotiated`)
and the description we last sent; :meth:`MediaSession.reoffer` answers the body of a
re-INVITE or UPDATE from the far end. The adapter sends the answer (or the refusal) and
applies what it agrees to the RTP stream.

=====  ======================================================================  ============
rule   the re-offer                                                            result
=====  ======================================================================  ============
R1     no body (a session-timer refresh by re-INVITE): the 200 must offer;     our last SDP,
       we offer what we last sent (its version unchanged)                      unchanged
R2     a body that is not SDP (:func:`~transports.sip.sdp.parse_sdp`)          SdpError
                                                                               (400)
R3     no audio stream with a codec we support (S6), or PCMU/PCMA on a         SdpError
       dynamic payload type (the RTP stream sends 0 and 8 only)                (488)
R4     an answer with the same media as our last description (a refresh, a    our last SDP,
       repeated offer, or only the far end's address changed): RFC 3264 §8     version
                                                                               unchanged
R5     anything else: hold (``sendonly``/``inactive``/``c=0.0.0.0``: S4),      new answer,
       unhold, another codec (S2: the offer's order), a new RTP address,       version + 1
       another telephone-event type
R6     a hold whose address is ``0.0.0.0``: where RTP goes stays as it was    previous
       (nothing is sent while held; the unhold's offer says where next)       address
=====  ======================================================================  ============

A refused re-offer (R2, R3) changes nothing: the call goes on with what it had.
"""

from __future__ import annotations

import msgspec

from transports.sip.sdp import (
    Negotiated,
    Origin,
    SdpError,
    SessionDescription,
    answer_offer,
    parse_sdp,
)

__all__ = ["MediaSession", "Reanswer"]

_HOLD_ADDRESS = "0.0.0.0"
_G711 = (0, 8)


class Reanswer(msgspec.Struct, frozen=True):
    """What to answer a re-offer with, and what it agrees."""

    sdp: bytes
    negotiated: Negotiated
    changed: bool  # what was agreed changed (hold, codec, the far end's address)


class MediaSession:
    """One call's agreed media: ``sent`` is the description we last sent (our answer to the
    INVITE, or our offer in it), ``port`` our RTP port."""

    def __init__(self, sent: SessionDescription, port: int, negotiated: Negotiated) -> None:
        self.sent = sent
        self.port = port
        self.negotiated = negotiated

    @property
    def held(self) -> bool:
        """We do not send (the far end holds the call, or made it inactive)."""
        return not self.negotiated.sending

    def reoffer(self, body: bytes) -> Reanswer | SdpError:
        """Answer a re-offer (R1-R6); on a :class:`Reanswer` the session is updated."""
        if not body.strip():  # R1
            return Reanswer(bytes(self.sent), self.negotiated, False)
        offer = parse_sdp(body)
        if isinstance(offer, SdpError):  # R2
            return offer
        answered = answer_offer(offer, self.sent.origin, self.port)
        if isinstance(answered, SdpError):  # R3
            return answered
        answer, negotiated = answered
        if negotiated.codec.payload_type not in _G711:  # R3: our stream sends 0 or 8 only
            return SdpError("R3", f"{negotiated.codec.name} on a dynamic payload type", 488)
        if negotiated.address == _HOLD_ADDRESS:  # R6
            negotiated = msgspec.structs.replace(
                negotiated, address=self.negotiated.address, port=self.negotiated.port
            )
        changed = negotiated != self.negotiated
        self.negotiated = negotiated
        if answer.media != self.sent.media:  # R5: our description changes, its version too
            origin = self.sent.origin
            version = Origin(origin.username, origin.session_id, origin.version + 1, origin.address)
            self.sent = msgspec.structs.replace(answer, origin=version)
        return Reanswer(bytes(self.sent), negotiated, changed)  # R4: self.sent as it was
