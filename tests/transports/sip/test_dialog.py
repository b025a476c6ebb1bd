"""The user agent core: calls both ways, CANCEL, BYE, re-INVITE, OPTIONS and every refusal,
driven by a scripted peer on a virtual clock (rule ids from transports/sip/dialog.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports.sip.dialog import UserAgent
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
    Reoffer,
    ReofferAnswered,
    ReofferFailed,
)
from transports.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
)
from transports.sip.transaction import Address

PEER = ("192.0.2.4", 5060)
OFFER = b"v=0\r\no=a 1 1 IN IP4 192.0.2.4\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\n"
ANSWER = OFFER.replace(b"o=a", b"o=bot")


def ua(
    *, accept_source: Callable[[Address], bool] = lambda _: True, max_calls: int = 100
) -> UserAgent:
    counter = itertools.count(1)
    return UserAgent(
        "198.51.100.7",
        5060,
        new_id=lambda: f"id{next(counter)}",
        accept_source=accept_source,
        max_calls=max_calls,
    )


class Peer:
    """A scripted softphone: builds its requests, reads what the agent sent it."""

    def __init__(self, call_id: str = "call-1") -> None:
        self.call_id = call_id
        self.cseq = 1
        self.branches = itertools.count(1)
        self.to_tag = ""
        self.first_branch = f"z9hG4bK{call_id}-1"  # the INVITE's, when it is sent first

    def request(
        self,
        method: str,
        *,
        body: bytes = b"",
        cseq: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        branch: str = "",
    ) -> bytes:
        number = cseq if cseq is not None else self.cseq
        to = "<sip:bot@voxline.test>" + (f";tag={self.to_tag}" if self.to_tag else "")
        branch = branch or f"{self.first_branch[:-1]}{next(self.branches)}"
        base = (
            ("Via", f"SIP/2.0/UDP 192.0.2.4:5060;branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@atlanta.test>;tag=alice"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{number} {method}"),
            ("Contact", "<sip:alice@192.0.2.4:5060>"),
        )
        content = (("Content-Type", "application/sdp"),) if body else ()
        return bytes(
            SipRequest(
                headers=base + content + headers,
                body=body,
                method=method,
                uri="sip:bot@voxline.test",
            )
        )


def sent(agent: UserAgent) -> list[SipRequest | SipResponse]:
    out = []
    for outgoing in agent.data_to_send():
        message = parse_message(outgoing.data)
        assert isinstance(message, SipRequest | SipResponse), message
        out.append(message)
    return out


def statuses(agent: UserAgent) -> list[int | str]:
    return [m.status if isinstance(m, SipResponse) else m.method for m in sent(agent)]


def incoming(agent: UserAgent, peer: Peer, now: float = 0.0) -> str:
    (event,) = agent.receive(peer.request("INVITE", body=OFFER), PEER, now)
    assert isinstance(event, IncomingCall)
    assert statuses(agent) == [100]
    return event.call_id


def answered(agent: UserAgent, peer: Peer) -> str:
    call_id = incoming(agent, peer)
    agent.answer(call_id, ANSWER, 0.1)
    (ok,) = sent(agent)
    assert isinstance(ok, SipResponse)
    peer.to_tag = ok.to_addr.tag
    assert agent.receive(peer.request("ACK"), PEER, 0.2) == [CallConfirmed(call_id, b"")]
    return call_id


# -- an inbound call ---------------------------------------------------------------------------


def test_an_inbound_call_rings_answers_is_acked_and_hung_up_by_the_caller() -> None:
    agent, peer = ua(), Peer()
    (event,) = agent.receive(peer.request("INVITE", body=OFFER), PEER, 0.0)
    assert event == IncomingCall(
        "call-1", OFFER, "sip:alice@atlanta.test", "sip:bot@voxline.test", PEER, dialled="bot"
    )  # the request URI's user: the number dialled
    assert statuses(agent) == [100]  # U9
    agent.ring("call-1", 0.05)
    (ringing,) = sent(agent)
    assert isinstance(ringing, SipResponse)
    assert (ringing.status, ringing.to_addr.tag) == (180, "id1")
    agent.answer("call-1", ANSWER, 0.1)
    (ok,) = sent(agent)
    assert isinstance(ok, SipResponse)
    assert (ok.status, ok.body, ok.get("Content-Type")) == (200, ANSWER, "application/sdp")
    assert ok.to_addr.tag == "id1"
    assert ok.contact is not None
    assert ok.contact.uri == "sip:voxline@198.51.100.7:5060"
    peer.to_tag = "id1"
    assert agent.receive(peer.request("ACK"), PEER, 0.2) == [CallConfirmed("call-1", b"")]
    peer.cseq = 2
    assert agent.receive(peer.request("BYE"), PEER, 5.0) == [CallEnded("call-1", "bye")]
    assert statuses(agent) == [200]
    assert agent.calls == {}


def test_our_2xx_is_resent_until_the_ack() -> None:
    agent, peer = ua(), Peer()
    call_id = incoming(agent, peer)
    agent.answer(call_id, ANSWER, 0.0)
    sent(agent)
    resent = []
    while (when := agent.next_timer()) is not None and when < 4:
        agent.on_timer(when)
        resent += [when for status in statuses(agent) if status == 200]
    assert resent == [0.5, 1.5, 3.5]
    peer.to_tag = "id1"
    agent.receive(peer.request("ACK"), PEER, 3.6)
    agent.on_timer(7.5)
    assert statuses(agent) == []


def test_no_ack_ends_the_call_with_a_bye() -> None:
    agent, peer = ua(), Peer()
    call_id = incoming(agent, peer)
    agent.answer(call_id, ANSWER, 0.0)
    events: list[CallEvent] = []
    while (when := agent.next_timer()) is not None and when <= 32:
        events += agent.on_timer(when)
    assert events == [CallEnded(call_id, "no_ack")]
    assert "BYE" in statuses(agent)


def test_we_hang_up_with_a_bye_in_the_dialog() -> None:
    agent, peer = ua(), Peer()
    call_id = answered(agent, peer)
    agent.hangup(call_id, 9.0)
    (bye,) = sent(agent)
    assert isinstance(bye, SipRequest)
    assert (bye.method, bye.uri) == ("BYE", "sip:alice@192.0.2.4:5060")  # their Contact
    assert (bye.from_addr.tag, bye.to_addr.tag, bye.cseq.number) == ("id1", "alice", 1)
    assert agent.calls == {}
    peer.cseq = 2  # anything more in that dialog is unknown now
    assert agent.receive(peer.request("BYE"), PEER, 9.1) == [Dropped("BYE outside any dialog", 481)]


def test_a_cancel_before_the_answer_is_200_then_487_u10() -> None:
    agent, peer = ua(), Peer()
    incoming(agent, peer)
    cancel = peer.request("CANCEL", branch=peer.first_branch)  # the INVITE's branch
    assert agent.receive(cancel, PEER, 1.0) == [CallCancelled("call-1")]
    assert statuses(agent) == [200, 487]
    ack = peer.request("ACK", branch=peer.first_branch)
    assert agent.receive(ack, PEER, 1.1) == []  # the 487's ACK stays in its transaction
    with pytest.raises(KeyError):
        agent.answer("call-1", ANSWER, 1.2)


def test_a_cancel_after_the_answer_changes_nothing() -> None:
    agent, peer = ua(), Peer()
    incoming(agent, peer)
    agent.answer("call-1", ANSWER, 0.1)
    sent(agent)
    assert agent.receive(peer.request("CANCEL", branch=peer.first_branch), PEER, 0.2) == []
    assert statuses(agent) == [200]
    assert "call-1" in agent.calls


def test_a_cancel_for_nothing_is_481_u11() -> None:
    agent = ua()
    events = agent.receive(Peer().request("CANCEL"), PEER, 0.0)
    assert events == [Dropped("CANCEL for no INVITE", 481)]


def test_rejecting_a_call_sends_its_status() -> None:
    agent, peer = ua(), Peer()
    incoming(agent, peer)
    agent.reject("call-1", 488, 0.1)
    assert statuses(agent) == [488]
    assert agent.calls == {}


def test_a_call_refused_by_a_full_or_draining_server_says_when_to_retry() -> None:
    agent = ua()
    for call_id, status, retry in [("call-1", 503, "5"), ("call-b", 486, "")]:  # busy: no time
        incoming(agent, Peer(call_id))
        agent.reject(call_id, status, 0.1)
        (refusal,) = sent(agent)
        assert isinstance(refusal, SipResponse)
        assert (refusal.status, refusal.get("Retry-After")) == (status, retry)


# -- re-INVITE, UPDATE, INFO --------------------------------------------------------------------


def test_a_reinvite_for_hold_is_reoffered_and_answered_u16() -> None:
    agent, peer = ua(), Peer()
    call_id = answered(agent, peer)
    peer.cseq = 2
    hold = OFFER + b"a=sendonly\r\n"
    assert agent.receive(peer.request("INVITE", body=hold), PEER, 10) == [Reoffer(call_id, hold)]
    assert statuses(agent) == [100]
    peer.cseq = 3
    clash = peer.request("INVITE", body=OFFER)
    assert agent.receive(clash, PEER, 10.1) == [Dropped("an offer is already pending", 491)]
    sent(agent)
    agent.answer(call_id, ANSWER, 10.2)
    assert statuses(agent) == [200]
    ack = peer.request("ACK", cseq=2)
    assert agent.receive(ack, PEER, 10.3) == [CallConfirmed(call_id, b"")]


def test_a_refused_reoffer_keeps_the_call() -> None:
    agent, peer = ua(), Peer()
    call_id = answered(agent, peer)
    peer.cseq = 2
    agent.receive(peer.request("INVITE", body=OFFER), PEER, 10)
    agent.reject(call_id, 488, 10.1)
    assert statuses(agent) == [100, 488]
    assert call_id in agent.calls


def test_an_older_cseq_is_500_u15() -> None:
    agent, peer = ua(), Peer()
    answered(agent, peer)
    events = agent.receive(peer.request("INVITE", body=OFFER, cseq=1, branch="z9hG4bKx"), PEER, 5)
    assert events == [Dropped("CSeq went backwards", 500)]


def test_a_session_refresh_by_update_is_answered_u17() -> None:
    agent, peer = ua(), Peer()
    answered(agent, peer)
    peer.cseq = 2
    assert agent.receive(peer.request("UPDATE"), PEER, 900) == []
    assert statuses(agent) == [200]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"), ("application/dtmf", b"5")],
)
def test_dtmf_by_info_u18(content_type: str, body: bytes) -> None:
    agent, peer = ua(), Peer()
    call_id = answered(agent, peer)
    peer.cseq = 2
    info = peer.request("INFO", headers=(("Content-Type", content_type),), body=b"")
    info = info.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: %d\r\n\r\n" % len(body))
    assert agent.receive(info + body, PEER, 3) == [DtmfInfo(call_id, "5")]
    assert statuses(agent) == [200]


def test_session_timers_are_echoed() -> None:
    agent, peer = ua(), Peer()
    extra = (("Session-Expires", "1800"), ("Supported", "timer"))
    invite = peer.request("INVITE", body=OFFER, headers=extra)
    agent.receive(invite, PEER, 0)
    sent(agent)
    agent.answer("call-1", ANSWER, 0.1)
    (ok,) = sent(agent)
    assert ok.get("Session-Expires") == "1800;refresher=uac"
    assert ok.get("Require") == "timer"


# -- refusals -------------------------------------------------------------------------------------

REFUSALS = [
    (
        "U2",
        lambda p: p.request("INVITE", body=OFFER).replace(b"Max-Forwards: 70", b"Max-Forwards: 0"),
        483,
    ),
    ("U3", lambda p: p.request("INVITE", body=OFFER, headers=(("Require", "100rel"),)), 420),
    ("U6", lambda p: p.request("INVITE", body=OFFER, headers=(("Session-Expires", "30"),)), 422),
    (
        "U7",
        lambda p: p.request("INVITE", body=OFFER).replace(b"application/sdp", b"text/plain"),
        415,
    ),
    ("U12 BYE", lambda p: p.request("BYE"), 481),
    ("U12 INFO", lambda p: p.request("INFO"), 481),
    ("U19", lambda p: p.request("OPTIONS"), 200),
    ("U20", lambda p: p.request("REGISTER"), 405),
    ("U21", lambda p: p.request("FROBNICATE"), 501),
]


@pytest.mark.parametrize(
    ("build", "status"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_requests_answered_without_a_call(build: Callable[[Peer], bytes], status: int) -> None:
    agent = ua()
    events = agent.receive(build(Peer()), PEER, 0)
    assert [s for s in statuses(agent) if s != 100] == [status]
    assert not any(isinstance(e, IncomingCall) for e in events)
    assert agent.calls == {}


def test_options_says_what_we_allow_u19() -> None:
    agent = ua()
    agent.receive(Peer().request("OPTIONS"), PEER, 0)
    (ok,) = sent(agent)
    assert "INVITE" in ok.get("Allow")
    assert ok.get("Accept") == "application/sdp"


def test_sources_outside_the_allowed_networks_get_403_u4() -> None:
    agent = ua(accept_source=lambda source: source[0].startswith("10."))
    assert agent.receive(Peer().request("INVITE", body=OFFER), PEER, 0) == [
        Dropped("source not allowed", 403)
    ]


def test_calls_past_the_cap_get_503_u5() -> None:
    agent = ua(max_calls=1)
    incoming(agent, Peer("a"))
    events = agent.receive(Peer("b").request("INVITE", body=OFFER), PEER, 0)
    assert events == [Dropped("too many calls", 503)]


def test_a_second_invite_with_the_same_call_id_is_a_loop_u8() -> None:
    agent, peer = ua(), Peer()
    incoming(agent, peer)
    events = agent.receive(peer.request("INVITE", body=OFFER), PEER, 0.1)  # new branch
    assert events == [Dropped("Call-ID already in use", 482)]


def test_broken_requests_get_their_status_or_are_dropped_u1() -> None:
    agent = ua()
    broken = Peer().request("OPTIONS").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    (event,) = agent.receive(broken, PEER, 0)
    assert isinstance(event, Dropped)
    assert event.status == 400
    assert statuses(agent) == [400]
    (event,) = agent.receive(b"\x00garbage", PEER, 0)
    assert isinstance(event, Dropped)
    assert event.status is None
    assert statuses(agent) == []


# -- an outbound call -------------------------------------------------------------------------


def callee_reply(agent: UserAgent, status: int) -> tuple[SipRequest, SipResponse]:
    (invite,) = [m for m in sent(agent) if isinstance(m, SipRequest) and m.method == "INVITE"]
    headers = (("Contact", "<sip:carol@192.0.2.9>"),)
    body = ANSWER if status == 200 else b""
    reply = make_response(invite, status, to_tag="carol", headers=headers, body=body)
    return invite, reply


def test_an_outbound_call_rings_is_answered_and_acked() -> None:
    agent = ua()
    call_id = agent.invite("sip:carol@192.0.2.9", PEER, OFFER, 0.0)
    invite, ok = callee_reply(agent, 200)
    assert (invite.uri, invite.body, invite.from_addr.tag) == ("sip:carol@192.0.2.9", OFFER, "id2")
    ringing = make_response(invite, 180, to_tag="carol")
    assert agent.receive(bytes(ringing), PEER, 0.5) == [CallProgress(call_id, 180)]
    assert agent.receive(bytes(ok), PEER, 2.0) == [CallAnswered(call_id, ANSWER)]
    (ack,) = sent(agent)
    assert isinstance(ack, SipRequest)
    assert (ack.method, ack.uri, ack.cseq.number, ack.to_addr.tag) == (
        "ACK",
        "sip:carol@192.0.2.9",
        1,
        "carol",
    )
    assert agent.receive(bytes(ok), PEER, 2.5) == []  # resent 2xx: ACKed again
    assert statuses(agent) == ["ACK"]
    agent.reinvite(call_id, OFFER + b"a=sendonly\r\n", 3.0)
    reinvite, reok = callee_reply(agent, 200)
    assert reinvite.cseq.number == 2
    assert reinvite.to_addr.tag == "carol"
    assert agent.receive(bytes(reok), PEER, 3.1) == [ReofferAnswered(call_id, ANSWER)]
    agent.reinvite(call_id, OFFER, 4.0)
    _, refused = callee_reply(agent, 488)
    assert agent.receive(bytes(refused), PEER, 4.1) == [ReofferFailed(call_id, 488)]


def test_a_2xx_from_a_second_fork_is_acked_and_hung_up() -> None:
    agent = ua()
    call_id = agent.invite("sip:carol@192.0.2.9", PEER, OFFER, 0.0)
    invite, ok = callee_reply(agent, 200)
    agent.receive(bytes(ok), PEER, 1.0)
    sent(agent)
    fork = make_response(invite, 200, to_tag="dave", body=ANSWER)
    assert agent.receive(bytes(fork), PEER, 1.1) == [Dropped("2xx from a second fork")]
    ack, bye = sent(agent)
    assert isinstance(ack, SipRequest)
    assert isinstance(bye, SipRequest)
    assert [(m.method, m.to_addr.tag, m.cseq.number) for m in (ack, bye)] == [
        ("ACK", "dave", 1),
        ("BYE", "dave", 2),
    ]
    assert agent.calls[call_id].remote.tag == "carol"  # the first dialog goes on


def test_an_outbound_call_that_is_refused_fails_with_the_status() -> None:
    agent = ua()
    call_id = agent.invite("sip:carol@192.0.2.9", PEER, OFFER, 0.0)
    _, busy = callee_reply(agent, 486)
    assert agent.receive(bytes(busy), PEER, 1.0) == [CallFailed(call_id, 486, "Busy Here")]
    assert statuses(agent) == ["ACK"]  # by the transaction
    assert agent.calls == {}


def test_an_unanswered_outbound_call_fails_with_408() -> None:
    agent = ua()
    call_id = agent.invite("sip:carol@192.0.2.9", PEER, OFFER, 0.0)
    events: list[CallEvent] = []
    while (when := agent.next_timer()) is not None:
        events += agent.on_timer(when)
    assert events == [CallFailed(call_id, 408, "Request Timeout")]


def test_hanging_up_before_the_answer_cancels() -> None:
    agent = ua()
    call_id = agent.invite("sip:carol@192.0.2.9", PEER, OFFER, 0.0)
    invite, _ = callee_reply(agent, 200)
    agent.hangup(call_id, 1.0)
    (cancel,) = sent(agent)
    assert isinstance(cancel, SipRequest)
    assert (cancel.method, cancel.vias, cancel.cseq.number) == ("CANCEL", invite.vias, 1)
    terminated = make_response(invite, 487, to_tag="carol")
    failed = CallFailed(call_id, 487, "Request Terminated")
    assert agent.receive(bytes(terminated), PEER, 1.1) == [failed]  # the INVITE has ended
    assert agent.calls == {}


# -- two agents ----------------------------------------------------------------------------------


def test_two_agents_hold_a_call_across_a_network_that_loses_each_first_datagram() -> None:
    a = UserAgent("10.0.0.1", 5060, user="a", new_id=iter(f"a{i}" for i in range(99)).__next__)
    b = UserAgent("10.0.0.2", 5060, user="b", new_id=iter(f"b{i}" for i in range(99)).__next__)
    seen: set[bytes] = set()
    events: list[tuple[str, CallEvent]] = []

    def pump(now: float) -> None:
        for sender, receiver, name, source in (
            (a, b, "b", ("10.0.0.1", 5060)),
            (b, a, "a", ("10.0.0.2", 5060)),
        ):
            for outgoing in sender.data_to_send():
                first_line = outgoing.data.split(b"\r\n")[0]
                if first_line not in seen:  # the network drops the first of each kind
                    seen.add(first_line)
                    continue
                events.extend((name, e) for e in receiver.receive(outgoing.data, source, now))

    def run(until: float) -> float:
        now = 0.0
        while now < until:
            pump(now)
            due = [t for t in (a.next_timer(), b.next_timer()) if t is not None]
            if not due or min(due) > until:
                return until
            now = max(now, min(due))
            a.on_timer(now)
            b.on_timer(now)
        return now

    call_id = a.invite("sip:b@10.0.0.2", ("10.0.0.2", 5060), OFFER, 0.0)
    run(2)
    assert [type(e).__name__ for _, e in events] == ["IncomingCall"]
    b.answer(call_id, ANSWER, 2.0)
    run(6)
    names = [(who, type(e).__name__) for who, e in events]
    assert ("a", "CallAnswered") in names
    assert ("b", "CallConfirmed") in names
    b.hangup(call_id, 6.0)
    run(12)
    assert ("a", "CallEnded") in [(who, type(e).__name__) for who, e in events]
    assert a.calls == {}
    assert b.calls == {}


def test_a_bye_while_their_reoffer_waits_ends_that_transaction_with_487() -> None:
    agent, peer = ua(), Peer()
    call_id = answered(agent, peer)
    peer.cseq = 2
    agent.receive(peer.request("INVITE", body=OFFER), PEER, 10)
    peer.cseq = 3
    assert agent.receive(peer.request("BYE"), PEER, 11) == [CallEnded(call_id, "bye")]
    assert statuses(agent) == [100, 200, 487]
    while (when := agent.next_timer()) is not None:
        agent.on_timer(when)
    assert len(agent.transactions) == 0  # nothing left behind


def test_over_tcp_the_2xx_is_not_resent_and_the_clock_moves_on() -> None:
    agent, peer = ua(), Peer()
    agent.receive(peer.request("INVITE", body=OFFER), PEER, 0.0, reliable=True)
    agent.answer("call-1", ANSWER, 0.0)
    sent(agent)
    assert agent.next_timer() == 32.0  # only the give-up time: no busy loop
    assert agent.on_timer(32.0) == [CallEnded("call-1", "no_ack")]


def test_a_framed_stream_message_goes_in_already_parsed() -> None:
    agent, peer = ua(), Peer()
    framer = StreamFramer()
    (message,) = framer.feed(peer.request("OPTIONS"))
    assert agent.receive_message(message, PEER, 0.0, reliable=True) == []
    (outgoing,) = agent.data_to_send()
    assert outgoing.reliable


METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO", "REFER", "X"]


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(METHODS),
            st.integers(1, 4),  # CSeq
            st.booleans(),  # with our To tag
            st.integers(0, 3),  # branch
            st.binary(max_size=4),  # junk spliced in
            st.integers(0, 400),  # where
        ),
        max_size=12,
    )
)
def test_any_sequence_of_requests_never_raises_and_every_answer_parses(
    steps: list[tuple[str, int, bool, int, bytes, int]],
) -> None:
    agent, peer = ua(), Peer()
    now = 0.0
    for method, cseq, tagged, branch, junk, at in steps:
        peer.to_tag = "id1" if tagged else ""
        body = OFFER if method in ("INVITE", "UPDATE") else b""
        data = peer.request(method, body=body, cseq=cseq, branch=f"z9hG4bKf{branch}")
        data = data[:at] + junk + data[at:]
        for event in agent.receive(data, PEER, now):
            if isinstance(event, IncomingCall):
                agent.answer(event.call_id, ANSWER, now)
            elif isinstance(event, Reoffer):
                agent.reject(event.call_id, 488, now)
        sent(agent)  # every answer is itself a well-formed message
        now += 0.3
        if (when := agent.next_timer()) is not None and when <= now:
            agent.on_timer(now)
            sent(agent)
    while (when := agent.next_timer()) is not None:
        agent.on_timer(when)
        sent(agent)
    assert len(agent.transactions) == 0  # every transaction ends
