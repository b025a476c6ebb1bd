"""The SIP user agent core (RFC 3261 §12-§15): dialogs for calls both ways, sans-I/O.

:class:`UserAgent` sits on a :class:`~transports.sip.transaction.TransactionLayer`. The adapter
feeds it datagrams or framed stream messages (:meth:`~UserAgent.receive`) and its clock
(:meth:`~UserAgent.on_timer` when :meth:`~UserAgent.next_timer` is due) and sends what
:meth:`~UserAgent.data_to_send` returns; the session acts on the returned :data:`CallEvent`\\ s
and calls :meth:`~UserAgent.ring`, :meth:`~UserAgent.answer`, :meth:`~UserAgent.reject`,
:meth:`~UserAgent.hangup`, :meth:`~UserAgent.invite` and :meth:`~UserAgent.reinvite`. Bodies
are SDP bytes, untouched here (:mod:`transports.sip.sdp` reads them). A call is named by its
Call-ID (one dialog per Call-ID: a 2xx from a second fork is ACKed and that dialog hung up).

Requests from the peer (rule ids are cited by the tests):

=====  ======================================================================  ============
rule   request                                                                 answer
=====  ======================================================================  ============
U1     unparseable but answerable (M2-M6 of :mod:`~transports.sip.message`)    400/505/513
U2     Max-Forwards 0 (not ACK)                                                483
U3     Require naming anything but ``timer``                                   420
U4     INVITE from a source ``accept_source`` refuses                          403
U5     a new INVITE past ``max_calls`` (or ``max_calls_per_source`` from its   503
       host); Retry-After
U6     Session-Expires under 90 s                                              422 (Min-SE)
U7     a new INVITE with a body that is not ``application/sdp``                415
U8     a new INVITE with a known Call-ID (a loop or a merged request)          482
U9     a new INVITE                                                            100, then
                                                                               IncomingCall
U10    CANCEL for an INVITE not yet answered                                   200, 487,
                                                                               CallCancelled
U11    CANCEL matching no INVITE transaction                                   481
U12    BYE, re-INVITE, UPDATE, INFO, NOTIFY outside any dialog we hold         481
U13    BYE in a dialog                                                         200, CallEnded
U14    re-INVITE / UPDATE while an offer of ours or theirs is pending          491
U15    re-INVITE / UPDATE with an older CSeq                                   500
U16    re-INVITE / UPDATE with a body                                          Reoffer (the
                                                                               session
                                                                               answers)
U17    UPDATE without a body (a session-timer refresh)                         200
U18    INFO with ``application/dtmf-relay`` or ``application/dtmf``            200, DtmfInfo
U19    OPTIONS                                                                 200 (Allow)
U20    REGISTER, SUBSCRIBE, REFER, MESSAGE, PUBLISH, PRACK                     405 (Allow)
U21    any other method                                                        501
U22    ACK for our 2xx                                                         CallConfirmed
U23    NOTIFY in a dialog for our REFER (``Event: refer``, a sipfrag body)     200,
                                                                               ReferNotify
U24    any other NOTIFY in a dialog                                            489
=====  ======================================================================  ============

Our INVITE (:meth:`~UserAgent.invite`): a 401/407 is answered once with digest credentials
(:mod:`~transports.sip.digest`) when the user agent has them; with ``no_answer`` seconds and
no final response by then it is cancelled, and CallFailed(408) comes once the INVITE ends
(after our CANCEL, at 64*T1 if no final response came: RFC 3261 §9.1).
Our REFER (:meth:`~UserAgent.refer`) is answered by ReferAnswered, its NOTIFYs come as
ReferNotify.

Our 2xx to an INVITE is resent at T1, 2*T1, ... T2 (UDP) until its ACK; with no ACK after
64*T1 the call is ended with a BYE (§13.3.1.4) and a CallEnded(``no_ack``). Session timers
(RFC 4028) are tolerated, not enforced: Session-Expires is echoed with ``refresher=uac`` and
refreshes are answered; no call is ended for a missed refresh. Requests in a dialog go to the
address its messages came from (no DNS here; right behind NAT).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from transports.sip.bodies import DTMF_DIGITS, dtmf_digit, sipfrag_status
from transports.sip.call import ALLOW, SDP, CallState, Dialog
from transports.sip.digest import Credentials, authorization, pick_challenge
from transports.sip.events import (
    CallAnswered,
    CallCancelled,
    CallConfirmed,
    CallEnded,
    CallEvent,
    CallFailed,
    CallProgress,
    Dropped,
    DtmfInfo,
    IncomingCall,
    ReferAnswered,
    ReferNotify,
    Reoffer,
    ReofferAnswered,
    ReofferFailed,
)
from transports.sip.message import (
    MAGIC_COOKIE,
    NameAddr,
    ParseError,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
)
from transports.sip.transaction import (
    Address,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    Timers,
    TransactionLayer,
    TransactionTimeout,
)
from transports.sip.uri import Target, parse_target

__all__ = ["ALLOW", "UserAgent"]  # ALLOW: transports.sip.call's, re-exported

_NOT_ALLOWED = frozenset(("REGISTER", "SUBSCRIBE", "REFER", "MESSAGE", "PUBLISH", "PRACK"))
_MIN_SE = 90
#: a 503's ``Retry-After`` (RFC 3261 21.5.4): seconds a proxy leaves this server alone, so it
#: tries another one (a full or draining server takes no call sooner)
RETRY_AFTER = ("Retry-After", "5")


class UserAgent:
    """One user agent: our ``host``:``port`` and ``user`` for Via and Contact."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        user: str = "voxline",
        transport: str = "UDP",
        timers: Timers | None = None,
        new_id: Callable[[], str] = lambda: secrets.token_hex(8),
        accept_source: Callable[[Address], bool] = lambda _: True,
        max_calls: int = 100,
        max_calls_per_source: int | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.host, self.port, self.user, self.transport = host, port, user, transport
        self.credentials = credentials
        self.transactions = TransactionLayer(timers)
        self.timers = self.transactions.timers
        self._id = new_id
        self._accept_source = accept_source
        self.max_calls = max_calls
        self.max_calls_per_source = max_calls_per_source
        self.calls: dict[str, Dialog] = {}

    @property
    def contact(self) -> str:
        transport = "" if self.transport == "UDP" else f";transport={self.transport.lower()}"
        return f"<sip:{self.user}@{self.host}:{self.port}{transport}>"

    # -- from the adapter ------------------------------------------------------------------

    def receive(
        self, data: bytes, source: Address, now: float, *, reliable: bool = False
    ) -> list[CallEvent]:
        """One datagram (or one message a :class:`~transports.sip.message.StreamFramer` cut
        from a connection, when ``reliable``) from ``source``."""
        return self.receive_message(parse_message(data, stream=reliable), source, now, reliable)

    def receive_message(
        self,
        message: SipRequest | SipResponse | ParseError,
        source: Address,
        now: float,
        reliable: bool = False,
    ) -> list[CallEvent]:
        """What :meth:`receive` does, for a message already parsed (by a stream framer)."""
        if isinstance(message, ParseError):
            return self._refuse_unparsed(message, source, reliable)
        events: list[CallEvent] = []
        for event in self.transactions.receive(message, source, reliable, now):
            events += self._dispatch(event, now)
        return events

    def next_timer(self) -> float | None:
        times = [when for call in self.calls.values() for when in call.deadlines()]
        if (when := self.transactions.next_timer()) is not None:
            times.append(when)
        return min(times, default=None)

    def on_timer(self, now: float) -> list[CallEvent]:
        events: list[CallEvent] = []
        for event in self.transactions.on_timer(now):
            events += self._dispatch(event, now)
        for call in list(self.calls.values()):
            due = call.no_answer_at
            if call.state is CallState.OUTGOING and due is not None and now >= due:
                call.cancelled_with = (408, "No Answer")
                self.hangup(call.call_id, now)
            if call.sent_2xx is None:
                continue
            if now >= call.give_up_at:  # §13.3.1.4: no ACK, end the call
                call.sent_2xx = None
                self._bye(call, now)
                events.append(CallEnded(call.call_id, "no_ack"))
            elif now >= call.resend_at and not call.reliable:
                self.transactions.send_stateless(call.sent_2xx, call.peer, call.reliable)
                call.interval = min(2 * call.interval, self.timers.t2)
                call.resend_at = now + call.interval
        return events

    def data_to_send(self) -> list[Outgoing]:
        return self.transactions.data_to_send()

    def _refuse_unparsed(
        self, error: ParseError, source: Address, reliable: bool
    ) -> list[CallEvent]:
        if error.request is None or error.status is None or error.request.method == "ACK":
            return [Dropped(f"{error.rule}: {error.reason}")]
        reply = make_response(error.request, error.status)
        self.transactions.send_stateless(reply, source, reliable)
        return [Dropped(f"{error.rule}: {error.reason}", error.status)]

    def _dispatch(
        self, event: RequestReceived | ResponseReceived | TransactionTimeout, now: float
    ) -> list[CallEvent]:
        match event:
            case RequestReceived(request=request, source=source, reliable=reliable):
                return self._on_request(request, source, reliable, now)
            case ResponseReceived(response=response, request=request):
                return self._on_response(response, request, now)
            case TransactionTimeout(request=request, client=True):
                return self._on_timeout(request, now)
        return []

    # -- requests from the peer ------------------------------------------------------------

    def _on_request(
        self, request: SipRequest, source: Address, reliable: bool, now: float
    ) -> list[CallEvent]:
        method = request.method
        if method == "ACK":
            return self._on_ack(request)

        def refuse(status: int, why: str, *headers: tuple[str, str]) -> list[CallEvent]:
            self.transactions.respond(request, make_response(request, status, headers=headers), now)
            return [Dropped(why, status)]

        if request.max_forwards == 0:
            return refuse(483, "Max-Forwards 0")  # U2
        unknown = [r for r in request.get_all("Require") if r.lower() != "timer"]
        if unknown:
            return refuse(420, "unsupported extension", ("Unsupported", ", ".join(unknown)))
        expires = request.get("Session-Expires").split(";")[0].strip()
        if expires.isdigit() and int(expires) < _MIN_SE:
            return refuse(422, "session interval too small", ("Min-SE", str(_MIN_SE)))  # U6
        if method == "OPTIONS":  # U19
            headers = (("Allow", ALLOW), ("Accept", SDP), ("Supported", "timer"))
            self.transactions.respond(request, make_response(request, 200, headers=headers), now)
            return []
        if method == "CANCEL":
            return self._on_cancel(request, now)
        if method in _NOT_ALLOWED:
            return refuse(405, f"{method} is not served", ("Allow", ALLOW))  # U20
        if method not in ("INVITE", "BYE", "UPDATE", "INFO", "NOTIFY"):
            return refuse(501, f"unknown method {method[:20]}", ("Allow", ALLOW))  # U21
        to_tag = request.to_addr.tag
        call = self.calls.get(request.call_id)
        if method == "INVITE" and not to_tag:
            return self._on_invite(request, source, reliable, now, refuse)
        if call is None or to_tag != call.local.tag or request.from_addr.tag != call.remote.tag:
            return refuse(481, f"{method} outside any dialog")  # U12
        if method == "BYE":  # U13
            self.transactions.respond(request, make_response(request, 200), now)
            self._drop_pending(call, now)
            del self.calls[call.call_id]
            return [CallEnded(call.call_id, "bye")]
        if request.cseq.number <= call.remote_cseq:
            return refuse(500, "CSeq went backwards", ("Retry-After", "1"))  # U15
        call.remote_cseq = request.cseq.number
        if method == "INFO":
            return self._on_info(call, request, now)
        if method == "NOTIFY":
            return self._on_notify(call, request, now)
        if call.pending is not None or call.our_invite is not None or call.sent_2xx is not None:
            return refuse(491, "an offer is already pending")  # U14
        if method == "UPDATE" and not request.body:  # U17
            self.transactions.respond(request, call.reply(self.contact, request, 200), now)
            return []
        if contact := request.contact:
            call.target = contact.uri
        call.pending, call.reliable, call.peer = request, reliable, source
        return [Reoffer(call.call_id, request.body)]  # U16

    def _on_invite(
        self,
        request: SipRequest,
        source: Address,
        reliable: bool,
        now: float,
        refuse: Callable[..., list[CallEvent]],
    ) -> list[CallEvent]:
        if not self._accept_source(source):
            return refuse(403, "source not allowed")  # U4
        if len(self.calls) >= self.max_calls:
            return refuse(503, "too many calls", RETRY_AFTER)  # U5
        same_host = sum(call.peer[0] == source[0] for call in self.calls.values())
        if self.max_calls_per_source is not None and same_host >= self.max_calls_per_source:
            return refuse(503, "too many calls from one source", RETRY_AFTER)  # U5
        content_type = request.get("Content-Type").split(";")[0].strip().lower()
        if request.body and content_type != SDP:
            return refuse(415, f"body of type {content_type[:40]}", ("Accept", SDP))  # U7
        if request.call_id in self.calls:
            return refuse(482, "Call-ID already in use")  # U8
        call = Dialog(
            request.call_id, request.to_addr.with_tag(self._id()), request.from_addr, source
        )
        call.reliable = reliable
        call.remote_cseq = request.cseq.number
        call.target = request.contact.uri if request.contact else call.remote.uri
        call.routes = request.get_all("Record-Route")
        call.session_expires = request.get("Session-Expires").split(";")[0].strip()
        call.pending = request
        self.calls[call.call_id] = call
        target = parse_target(request.uri)
        dialled = target.user if isinstance(target, Target) else ""
        return [
            IncomingCall(
                call.call_id, request.body, call.remote.uri, call.local.uri, source, dialled
            )
        ]

    def _on_cancel(self, cancel: SipRequest, now: float) -> list[CallEvent]:
        invite = self.transactions.cancelled_invite(cancel)
        if invite is None:  # U11
            self.transactions.respond(cancel, make_response(cancel, 481), now)
            return [Dropped("CANCEL for no INVITE", 481)]
        self.transactions.respond(cancel, make_response(cancel, 200), now)
        call = self.calls.get(invite.call_id)
        if call is None or call.state is not CallState.INCOMING or call.pending is not invite:
            return []  # already answered: the CANCEL changes nothing
        self.transactions.respond(invite, call.reply(self.contact, invite, 487), now)
        del self.calls[call.call_id]
        return [CallCancelled(call.call_id)]  # U10

    def _on_info(self, call: Dialog, request: SipRequest, now: float) -> list[CallEvent]:
        content_type = request.get("Content-Type").split(";")[0].strip().lower()
        digit = dtmf_digit(content_type, request.body)
        if request.body and not digit:
            self.transactions.respond(request, call.reply(self.contact, request, 415), now)
            return [Dropped(f"INFO of type {content_type[:40]}", 415)]
        self.transactions.respond(request, call.reply(self.contact, request, 200), now)
        valid = len(digit) == 1 and digit in DTMF_DIGITS
        return [DtmfInfo(call.call_id, digit)] if valid else []  # U18

    def _on_notify(self, call: Dialog, request: SipRequest, now: float) -> list[CallEvent]:
        event = request.get("Event").split(";")[0].strip().lower()
        status = sipfrag_status(request.body)
        if event != "refer" or status is None:  # U24
            self.transactions.respond(request, call.reply(self.contact, request, 489), now)
            return [Dropped(f"NOTIFY for {event[:20] or 'no event'}", 489)]
        self.transactions.respond(request, call.reply(self.contact, request, 200), now)
        state = request.get("Subscription-State").split(";")[0].strip().lower()
        return [ReferNotify(call.call_id, status, state == "terminated")]  # U23

    def _on_ack(self, ack: SipRequest) -> list[CallEvent]:
        call = self.calls.get(ack.call_id)
        if call is None or call.sent_2xx is None or ack.cseq.number != call.sent_2xx.cseq.number:
            return [Dropped("ACK for nothing we sent")]
        call.sent_2xx = None
        call.state = CallState.CONFIRMED
        return [CallConfirmed(call.call_id, ack.body)]  # U22

    # -- responses to our requests ---------------------------------------------------------

    def _on_response(
        self, response: SipResponse, request: SipRequest | None, now: float
    ) -> list[CallEvent]:
        call = self.calls.get(response.call_id)
        if call is not None and response.cseq.method == "REFER" and response.status >= 200:
            return [ReferAnswered(call.call_id, response.status, response.reason)]
        if response.cseq.method != "INVITE" or call is None:
            return []  # BYE, CANCEL answers: nothing to do
        ok = 200 <= response.status < 300
        if ok and call.state is CallState.CONFIRMED and response.to_addr.tag != call.remote.tag:
            return self._refuse_fork(call, response, now)
        if (
            request is None
            or call.our_invite is None
            or response.cseq.number != call.our_invite.cseq.number
        ):
            if 200 <= response.status < 300 and call.ack:  # a 2xx resent: ACK it again
                self.transactions.send_stateless(call.ack, call.peer, call.reliable)
            return []
        status = response.status
        initial = call.state in (CallState.OUTGOING, CallState.CANCELLING)
        if status < 200:
            return [CallProgress(call.call_id, status)] if initial and status > 100 else []
        if (
            status in (401, 407)
            and call.state is CallState.OUTGOING
            and self._authorize(call, response, now)
        ):
            return []  # sent again, with credentials
        call.our_invite = None
        if call.state is CallState.CANCELLING and status >= 300:
            del self.calls[call.call_id]  # the CANCEL worked
            return [CallFailed(call.call_id, *call.cancelled_with)]
        if status >= 300:
            if initial:
                del self.calls[call.call_id]
                return [CallFailed(call.call_id, status, response.reason)]
            return [ReofferFailed(call.call_id, status)]
        if initial:
            call.remote = response.to_addr
            call.routes = list(reversed(response.get_all("Record-Route")))
        if contact := response.contact:
            call.target = contact.uri
        ack = self._request(call, "ACK", now, cseq=response.cseq.number)
        call.ack = ack
        self.transactions.send_request(ack, call.peer, call.reliable, now)
        if call.state is CallState.CANCELLING:  # answered while we cancelled: hang up
            self._bye(call, now)
            return [CallFailed(call.call_id, *call.cancelled_with)]
        call.state = CallState.CONFIRMED
        return [
            CallAnswered(call.call_id, response.body)
            if initial
            else ReofferAnswered(call.call_id, response.body)
        ]

    def _refuse_fork(self, call: Dialog, response: SipResponse, now: float) -> list[CallEvent]:
        """A 2xx from a second fork of our INVITE: ACK it and hang up that dialog (§13.2.2.4)."""
        fork = Dialog(call.call_id, call.local, response.to_addr, call.peer)
        fork.reliable, fork.local_cseq = call.reliable, response.cseq.number
        fork.target = response.contact.uri if response.contact else fork.remote.uri
        ack = self._request(fork, "ACK", now, cseq=response.cseq.number)
        self.transactions.send_request(ack, fork.peer, fork.reliable, now)
        self.transactions.send_request(
            self._request(fork, "BYE", now), fork.peer, fork.reliable, now
        )
        return [Dropped("2xx from a second fork")]

    def _on_timeout(self, request: SipRequest, now: float) -> list[CallEvent]:
        call = self.calls.get(request.call_id)
        if request.method == "REFER" and call is not None:
            return [ReferAnswered(call.call_id, 408, "Request Timeout")]
        if call is None or request.method != "INVITE":
            return []
        call.our_invite = None
        if call.state in (CallState.OUTGOING, CallState.CANCELLING):
            del self.calls[call.call_id]
            failed = call.cancelled_with if call.state is CallState.CANCELLING else None
            return [CallFailed(call.call_id, *(failed or (408, "Request Timeout")))]
        self._bye(call, now)  # §14.1: a re-INVITE that timed out ends the call
        return [CallEnded(call.call_id, "timeout")]

    # -- from the session ------------------------------------------------------------------

    def ring(self, call_id: str, now: float, status: int = 180) -> None:
        call = self._incoming(call_id)
        assert call.pending is not None
        self.transactions.respond(call.pending, call.reply(self.contact, call.pending, status), now)

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        """Accept the pending INVITE (the call, or a re-INVITE) or UPDATE with ``sdp``."""
        call = self.calls[call_id]
        request = call.pending
        if request is None:
            raise RuntimeError(f"call {call_id} has nothing to answer")  # our error
        headers = [("Content-Type", SDP)]
        if call.session_expires:
            headers += [("Session-Expires", f"{call.session_expires};refresher=uac")]
            headers += [("Require", "timer")] if "timer" in request.get_all("Supported") else []
        response = call.reply(self.contact, request, 200, headers, sdp)
        self.transactions.respond(request, response, now)
        call.pending = None
        if request.method == "INVITE":
            call.sent_2xx, call.interval = response, self.timers.t1
            call.give_up_at = now + 64 * self.timers.t1
            call.resend_at = call.give_up_at if call.reliable else now + self.timers.t1

    def reject(self, call_id: str, status: int, now: float) -> None:
        """Refuse the pending INVITE (486, 603, 488...): a new call ends, a refused
        re-offer keeps the call as it was. A 503 says when to retry (:data:`RETRY_AFTER`)."""
        call = self.calls[call_id]
        if call.pending is None:
            raise RuntimeError(f"call {call_id} has nothing to reject")
        headers = [RETRY_AFTER] if status == 503 else None  # the server's at capacity or draining
        reply = call.reply(self.contact, call.pending, status, headers)
        self.transactions.respond(call.pending, reply, now)
        call.pending = None
        if call.state is CallState.INCOMING:
            del self.calls[call_id]

    def hangup(self, call_id: str, now: float) -> None:
        """End the call whatever its state: 480 before answer, CANCEL before their answer
        (CallFailed(487) follows once our INVITE has ended), BYE after (nothing follows)."""
        call = self.calls.get(call_id)
        if call is None:
            return
        if call.state is CallState.INCOMING:
            self.reject(call_id, 480, now)
        elif call.state is CallState.OUTGOING and call.our_invite is not None:
            invite = call.our_invite
            headers = [(n, v) for n, v in invite.headers if n in ("Via", "From", "To", "Call-ID")]
            headers += [("Max-Forwards", "70"), ("CSeq", f"{invite.cseq.number} CANCEL")]
            cancel = SipRequest(headers=tuple(headers), method="CANCEL", uri=invite.uri)
            self.transactions.send_request(cancel, call.peer, call.reliable, now)
            call.state = CallState.CANCELLING
            self.transactions.cancelled(invite, now)
        elif call.state is CallState.CONFIRMED:
            self._bye(call, now)

    def invite(
        self,
        target: str,
        peer: Address,
        sdp: bytes,
        now: float,
        *,
        reliable: bool = False,
        no_answer: float | None = None,
        caller: str | None = None,
    ) -> str:
        """Call ``target`` (a SIP URI) at ``peer`` from ``caller`` (a SIP URI; None: ours); the
        new call's id. An INVITE with no final response in ``no_answer`` s is cancelled."""
        call_id = f"{self._id()}@{self.host}"
        local = NameAddr(caller or f"sip:{self.user}@{self.host}", "", {"tag": self._id()})
        call = Dialog(call_id, local, NameAddr(target), peer)
        call.state, call.reliable = CallState.OUTGOING, reliable
        call.no_answer_at = None if no_answer is None else now + no_answer
        self.calls[call_id] = call
        self._send_invite(call, sdp, now)
        return call_id

    def refer(self, call_id: str, target: str, now: float) -> None:
        """Ask the peer to call ``target`` (a blind transfer, RFC 3515): the answer comes as
        ReferAnswered, the target's progress as ReferNotify."""
        call = self.calls[call_id]
        if call.state is not CallState.CONFIRMED:
            raise RuntimeError(f"call {call_id} cannot transfer now")  # our error
        headers = [("Refer-To", f"<{target}>"), ("Referred-By", f"<{call.local.uri}>")]
        request = self._request(call, "REFER", now, headers=headers)
        self.transactions.send_request(request, call.peer, call.reliable, now)

    def reinvite(self, call_id: str, sdp: bytes, now: float) -> None:
        """Offer ``sdp`` in the call (hold, unhold, codec change); the outcome comes as
        ReofferAnswered or ReofferFailed."""
        call = self.calls[call_id]
        if call.state is not CallState.CONFIRMED or call.pending or call.our_invite:
            raise RuntimeError(f"call {call_id} cannot re-offer now")
        self._send_invite(call, sdp, now)

    # -- building ----------------------------------------------------------------------------

    def _incoming(self, call_id: str) -> Dialog:
        call = self.calls[call_id]
        if call.pending is None:
            raise RuntimeError(f"call {call_id} has no INVITE pending")
        return call

    def _send_invite(
        self, call: Dialog, sdp: bytes, now: float, headers: list[tuple[str, str]] | None = None
    ) -> None:
        request = self._request(call, "INVITE", now, sdp, headers=headers)
        call.our_invite = request
        self.transactions.send_request(request, call.peer, call.reliable, now)

    def _authorize(self, call: Dialog, response: SipResponse, now: float) -> bool:
        """Send our INVITE again answering the 401/407's digest challenge (False: no
        credentials, no challenge we can answer, or one answered already)."""
        proxy = response.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        challenge = pick_challenge(response.get_all(name), proxy=proxy)
        invite = call.our_invite
        if self.credentials is None or challenge is None or invite is None or call.auth_tries:
            return False
        call.auth_tries += 1
        answer = authorization(
            challenge, self.credentials, "INVITE", invite.uri, cnonce=self._id(), body=invite.body
        )
        self._send_invite(call, invite.body, now, [(challenge.header, answer)])
        return True

    def _drop_pending(self, call: Dialog, now: float) -> None:
        """Answer 487 to a request of theirs still waiting for us, so its transaction ends."""
        if call.pending is not None:
            reply = call.reply(self.contact, call.pending, 487)
            self.transactions.respond(call.pending, reply, now)
            call.pending = None

    def _bye(self, call: Dialog, now: float) -> None:
        self._drop_pending(call, now)
        self.calls.pop(call.call_id, None)
        self.transactions.send_request(
            self._request(call, "BYE", now), call.peer, call.reliable, now
        )

    def _request(
        self,
        call: Dialog,
        method: str,
        now: float,
        body: bytes = b"",
        *,
        cseq: int = 0,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        branch = f"{MAGIC_COOKIE}{self._id()}"
        via = f"SIP/2.0/{self.transport} {self.host}:{self.port};branch={branch};rport"
        return call.request(method, via, self.contact, body, cseq=cseq, headers=headers)
