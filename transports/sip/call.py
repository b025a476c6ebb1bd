"""One call's dialog state (RFC 3261 §12), held by :class:`~transports.sip.dialog.UserAgent`.

A :class:`Dialog` is named by its Call-ID and holds both tags, the remote target and route
set, both CSeq counters and what is in flight: their INVITE or UPDATE awaiting our answer, our
INVITE awaiting its final response, our 2xx awaiting its ACK, our REFER awaiting its answer.
Its deadlines (``resend_at``/``give_up_at`` for our 2xx, ``no_answer_at`` for our INVITE)
are times on the user agent's clock.
"""

from __future__ import annotations

import enum

from transports.sip.message import NameAddr, SipRequest, SipResponse, make_response
from transports.sip.transaction import Address

__all__ = ["ALLOW", "SDP", "CallState", "Dialog"]

#: the methods the user agent serves (Allow)
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, NOTIFY"
SDP = "application/sdp"


class CallState(enum.Enum):
    INCOMING = "incoming"  # their INVITE, not answered
    OUTGOING = "outgoing"  # our INVITE, no final response
    CANCELLING = "cancelling"  # our INVITE, CANCEL sent
    CONFIRMED = "confirmed"


class Dialog:
    def __init__(self, call_id: str, local: NameAddr, remote: NameAddr, peer: Address) -> None:
        self.call_id = call_id
        self.local = local  # with our tag
        self.remote = remote  # with theirs, once known
        self.peer = peer
        self.reliable = False
        self.state = CallState.INCOMING
        self.target = remote.uri  # the remote target (Contact)
        self.routes: list[str] = []
        self.local_cseq = 0
        self.remote_cseq = 0
        self.pending: SipRequest | None = None  # their INVITE/UPDATE awaiting our answer
        self.our_invite: SipRequest | None = None  # our INVITE awaiting its final response
        self.ack: SipRequest | None = None  # the ACK we sent for their last 2xx
        self.session_expires = ""
        self.sent_2xx: SipResponse | None = None  # resent until the ACK
        self.resend_at = 0.0
        self.interval = 0.0
        self.give_up_at = 0.0
        #: our INVITE is cancelled when no final response came by then (None: never)
        self.no_answer_at: float | None = None
        #: what CallFailed says once our cancelled INVITE ends (ours: 487; no answer: 408)
        self.cancelled_with = (487, "Request Terminated")
        #: digest challenges answered for our INVITE (one each: a second 401 is final)
        self.auth_tries = 0

    def deadlines(self) -> list[float]:
        """Every time the user agent must look at this call again."""
        times = [self.resend_at, self.give_up_at] if self.sent_2xx is not None else []
        if self.state is CallState.OUTGOING and self.no_answer_at is not None:
            times.append(self.no_answer_at)
        return times

    def request(
        self,
        method: str,
        via: str,
        contact: str,
        body: bytes = b"",
        *,
        cseq: int = 0,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        """A request of ours in this dialog (the next CSeq unless ``cseq`` is given)."""
        if not cseq:
            self.local_cseq += 1
            cseq = self.local_cseq
        fields = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", str(self.local)),
            ("To", str(self.remote)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            *[("Route", route) for route in self.routes],
            ("Contact", contact),
            *(headers or []),
        ]
        if method == "INVITE":
            fields += [("Allow", ALLOW), ("Supported", "timer")]
        if body:
            fields.append(("Content-Type", SDP))
        return SipRequest(headers=tuple(fields), body=body, method=method, uri=self.target)

    def reply(
        self,
        contact: str,
        request: SipRequest,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> SipResponse:
        """Our response to ``request`` of this dialog, with our tag."""
        extra = [("Contact", contact)] if request.method == "INVITE" and status < 300 else []
        if request.method == "INVITE" and 200 <= status < 300:
            extra += [
                ("Allow", ALLOW),
                *[("Record-Route", r) for r in request.get_all("Record-Route")],
            ]
        return make_response(
            request, status, to_tag=self.local.tag, headers=[*extra, *(headers or [])], body=body
        )
