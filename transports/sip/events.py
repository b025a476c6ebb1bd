"""What the SIP user agent (:mod:`transports.sip.dialog`) tells the session, one struct each.

=====================  ======================================================================
event                  when
=====================  ======================================================================
IncomingCall           a new INVITE (100 Trying already sent): ring, answer or reject it
CallProgress           our INVITE got a 180/183
CallAnswered           our INVITE got a 2xx (the ACK is sent): media starts
CallFailed             our INVITE got a final error, or no answer at all (408)
CallConfirmed          the ACK for our 2xx came
CallCancelled          the caller cancelled before we answered (487 sent)
CallEnded              a BYE came, our 2xx was never ACKed, or a re-INVITE timed out (never
                       for a hang-up of ours)
Reoffer                a re-INVITE or UPDATE with a new offer: answer or reject it
ReofferAnswered        our re-INVITE was accepted
ReofferFailed          our re-INVITE was refused: the session goes on as it was
DtmfInfo               a digit by SIP INFO
ReferAnswered          the final answer to our REFER (202: the transfer is under way; 408:
                       none came)
ReferNotify            a NOTIFY of our REFER's implicit subscription: the transfer target's
                       status so far (a ``message/sipfrag``), and whether it is the last
Dropped                peer input that was refused or ignored (for a log line)
=====================  ======================================================================
"""

from __future__ import annotations

import msgspec

from transports.sip.transaction import Address

__all__ = [
    "CallAnswered",
    "CallCancelled",
    "CallConfirmed",
    "CallEnded",
    "CallEvent",
    "CallFailed",
    "CallProgress",
    "Dropped",
    "DtmfInfo",
    "IncomingCall",
    "ReferAnswered",
    "ReferNotify",
    "Reoffer",
    "ReofferAnswered",
    "ReofferFailed",
]


class IncomingCall(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    offer: bytes  # may be empty: then the session offers in its 200, the answer is in the ACK
    caller: str  # From URI
    callee: str  # To URI
    source: Address
    dialled: str = ""  # the request URI's user part: the number dialled


class CallProgress(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    status: int  # 180, 183


class CallAnswered(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    answer: bytes  # the callee's SDP (we sent the ACK)


class CallFailed(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    status: int  # busy, rejected, 408 for no answer at all
    reason: str


class CallConfirmed(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    body: bytes  # the caller's answer when our 200 carried the offer


class CallCancelled(msgspec.Struct, frozen=True, tag=True):
    call_id: str


class CallEnded(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    reason: str  # "bye" (the peer hung up), "no_ack", "timeout"


class Reoffer(msgspec.Struct, frozen=True, tag=True):
    """A re-INVITE or UPDATE with a new offer (hold, unhold, codec change): answer it with
    :meth:`UserAgent.answer` or :meth:`UserAgent.reject` (488 keeps the old session)."""

    call_id: str
    offer: bytes


class ReofferAnswered(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    answer: bytes


class ReofferFailed(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    status: int


class DtmfInfo(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    digit: str


class ReferAnswered(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    status: int
    reason: str


class ReferNotify(msgspec.Struct, frozen=True, tag=True):
    call_id: str
    status: int  # the sipfrag's: 100 trying, 180 ringing, 200 answered, 486 busy ...
    terminated: bool  # Subscription-State: terminated (no NOTIFY follows)


class Dropped(msgspec.Struct, frozen=True, tag=True):
    """Something the peer sent that was refused or ignored, for a log line."""

    reason: str
    status: int | None = None  # what was answered, if anything


CallEvent = (
    IncomingCall
    | CallProgress
    | CallAnswered
    | CallFailed
    | CallConfirmed
    | CallCancelled
    | CallEnded
    | Reoffer
    | ReofferAnswered
    | ReofferFailed
    | DtmfInfo
    | ReferAnswered
    | ReferNotify
    | Dropped
)
