"""Our side of a call's requests: an INVITE that rings too long, one cancelled, one
challenged for credentials, and a blind transfer by REFER with its NOTIFYs, on a virtual
clock against a scripted peer (rule ids from transports/sip/dialog.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.transports.sip.test_dialog import (
    ANSWER,
    OFFER,
    PEER,
    Peer,
    answered,
    sent,
    statuses,
)
from transports.sip.dialog import UserAgent
from transports.sip.digest import Credentials, authorization, parse_challenge
from transports.sip.events import (
    CallAnswered,
    CallEvent,
    CallFailed,
    CallProgress,
    Dropped,
    ReferAnswered,
    ReferNotify,
)
from transports.sip.message import SipRequest, SipResponse, make_response, parse_message

TARGET = "sip:carol@192.0.2.9"
CREDENTIALS = Credentials("voxline", "s3cret")


def ua(credentials: Credentials | None = None) -> UserAgent:
    counter = itertools.count(1)
    return UserAgent(
        "198.51.100.7", 5060, new_id=lambda: f"id{next(counter)}", credentials=credentials
    )


def run_timers(agent: UserAgent, until: float = 1000.0) -> list[tuple[float, CallEvent]]:
    events: list[tuple[float, CallEvent]] = []
    while (when := agent.next_timer()) is not None and when <= until:
        events += [(when, event) for event in agent.on_timer(when)]
    return events


def ringing(agent: UserAgent, no_answer: float | None = None) -> tuple[str, SipRequest]:
    call_id = agent.invite(TARGET, PEER, OFFER, 0.0, no_answer=no_answer)
    (invite,) = sent(agent)
    assert isinstance(invite, SipRequest)
    ring = make_response(invite, 180, to_tag="carol")
    assert agent.receive(bytes(ring), PEER, 0.5) == [CallProgress(call_id, 180)]
    return call_id, invite


# -- no answer, CANCEL ---------------------------------------------------------------------------


def test_a_phone_may_ring_past_timer_b_when_no_limit_is_set() -> None:
    agent = ua()
    ringing(agent)
    assert run_timers(agent) == []
    assert sent(agent) == []  # no retransmission once it rings


def test_an_invite_unanswered_in_time_is_cancelled_and_fails_with_408() -> None:
    agent = ua()
    call_id, invite = ringing(agent, no_answer=30.0)
    assert run_timers(agent, 29.9) == []
    assert run_timers(agent, 30.0) == []
    (cancel,) = sent(agent)
    assert isinstance(cancel, SipRequest)
    assert (cancel.method, cancel.vias, cancel.cseq.number) == ("CANCEL", invite.vias, 1)
    terminated = make_response(invite, 487, to_tag="carol")
    assert agent.receive(bytes(terminated), PEER, 30.1) == [CallFailed(call_id, 408, "No Answer")]
    assert statuses(agent) == ["ACK"]  # the 487, by its transaction
    run_timers(agent)
    assert agent.calls == {}
    assert len(agent.transactions) == 0


def test_a_cancelled_invite_with_no_final_response_is_given_up_at_64_t1() -> None:
    agent = ua()
    call_id, _ = ringing(agent)
    agent.hangup(call_id, 1.0)
    assert statuses(agent) == ["CANCEL"]
    events = run_timers(agent)
    assert (33.0, CallFailed(call_id, 487, "Request Terminated")) in events
    assert agent.calls == {}
    assert len(agent.transactions) == 0


def test_an_answer_that_crosses_our_cancel_is_acked_and_hung_up() -> None:
    agent = ua()
    call_id, invite = ringing(agent)
    agent.hangup(call_id, 1.0)
    sent(agent)
    ok = make_response(invite, 200, to_tag="carol", body=ANSWER)
    failed = CallFailed(call_id, 487, "Request Terminated")
    assert agent.receive(bytes(ok), PEER, 1.1) == [failed]
    assert statuses(agent) == ["ACK", "BYE"]
    assert agent.calls == {}


# -- digest credentials --------------------------------------------------------------------------


def challenge(invite: SipRequest, status: int, value: str) -> SipResponse:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return make_response(invite, status, to_tag="proxy", headers=[(name, value)])


@pytest.mark.parametrize(
    ("status", "header"), [(401, "Authorization"), (407, "Proxy-Authorization")]
)
def test_a_challenge_is_answered_once_with_the_credentials(status: int, header: str) -> None:
    agent = ua(CREDENTIALS)
    call_id = agent.invite(TARGET, PEER, OFFER, 0.0)
    (invite,) = sent(agent)
    assert isinstance(invite, SipRequest)
    value = 'Digest realm="pbx", nonce="abc", qop="auth", algorithm=SHA-256'
    assert agent.receive(bytes(challenge(invite, status, value)), PEER, 0.1) == []
    ack, again = sent(agent)
    assert isinstance(ack, SipRequest)
    assert isinstance(again, SipRequest)
    assert (ack.method, again.method, again.cseq.number) == ("ACK", "INVITE", 2)
    assert (again.call_id, again.from_addr.tag) == (invite.call_id, invite.from_addr.tag)
    assert again.vias[0].branch != invite.vias[0].branch
    parsed = parse_challenge(value, proxy=status == 407)
    assert parsed is not None
    expected = authorization(parsed, CREDENTIALS, "INVITE", TARGET, cnonce="id4", body=OFFER)
    assert again.get(header) == expected
    # refused again: that is final
    refused = challenge(again, status, value.replace("abc", "def"))
    assert agent.receive(bytes(refused), PEER, 0.2) == [CallFailed(call_id, status, "Unknown")]
    # and the answer after a challenge starts the call as any would
    agent = ua(CREDENTIALS)
    call_id = agent.invite(TARGET, PEER, OFFER, 0.0)
    (invite,) = sent(agent)
    assert isinstance(invite, SipRequest)
    agent.receive(bytes(challenge(invite, status, value)), PEER, 0.1)
    _, again = sent(agent)
    assert isinstance(again, SipRequest)
    ok = make_response(again, 200, to_tag="carol", body=ANSWER)
    assert agent.receive(bytes(ok), PEER, 0.3) == [CallAnswered(call_id, ANSWER)]


def test_without_credentials_a_challenge_fails_the_call() -> None:
    agent = ua()
    call_id = agent.invite(TARGET, PEER, OFFER, 0.0)
    (invite,) = sent(agent)
    assert isinstance(invite, SipRequest)
    response = challenge(invite, 401, 'Digest realm="pbx", nonce="abc"')
    assert agent.receive(bytes(response), PEER, 0.1) == [CallFailed(call_id, 401, "Unknown")]


def test_a_challenge_we_cannot_answer_fails_the_call() -> None:
    agent = ua(CREDENTIALS)
    call_id = agent.invite(TARGET, PEER, OFFER, 0.0)
    (invite,) = sent(agent)
    assert isinstance(invite, SipRequest)
    response = challenge(invite, 401, 'Digest realm="pbx", nonce="abc", algorithm=SHA-512-256')
    assert agent.receive(bytes(response), PEER, 0.1) == [CallFailed(call_id, 401, "Unknown")]


# -- blind transfer by REFER ---------------------------------------------------------------------


def notify(peer: Peer, sipfrag: bytes, state: str, event: str = "refer") -> bytes:
    """The peer's NOTIFY in its dialog, with a ``message/sipfrag`` body."""
    peer.cseq += 1
    base = parse_message(peer.request("NOTIFY"))
    assert isinstance(base, SipRequest)
    headers = (
        *base.headers,
        ("Event", event),
        ("Subscription-State", state),
        ("Content-Type", "message/sipfrag"),
    )
    return bytes(SipRequest(headers=headers, body=sipfrag, method="NOTIFY", uri=base.uri))


def refer_sent(agent: UserAgent, call_id: str) -> SipRequest:
    agent.refer(call_id, "sip:desk@192.0.2.20", 5.0)
    (refer,) = sent(agent)
    assert isinstance(refer, SipRequest)
    return refer


def test_a_refer_accepted_then_notified_to_its_end() -> None:
    agent, peer = ua(), Peer()
    call_id = answered(agent, peer)
    refer = refer_sent(agent, call_id)
    assert refer.method == "REFER"
    assert refer.get("Refer-To") == "<sip:desk@192.0.2.20>"
    assert refer.get("Referred-By") == "<sip:bot@voxline.test>"
    assert refer.to_addr.tag == "alice"
    assert refer.uri == "sip:alice@192.0.2.4:5060"  # the remote target
    accepted = make_response(refer, 202)
    assert agent.receive(bytes(accepted), PEER, 5.1) == [ReferAnswered(call_id, 202, "Accepted")]
    trying = notify(peer, b"SIP/2.0 100 Trying\r\n", "active;expires=60")
    assert agent.receive(trying, PEER, 5.2) == [ReferNotify(call_id, 100, False)]
    assert statuses(agent) == [200]  # U23
    done = notify(peer, b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource")
    assert agent.receive(done, PEER, 6.0) == [ReferNotify(call_id, 200, True)]
    assert statuses(agent) == [200]


def test_a_refused_refer_says_its_status() -> None:
    agent, peer = ua(), Peer()
    call_id = answered(agent, peer)
    refer = refer_sent(agent, call_id)
    declined = make_response(refer, 603)
    assert agent.receive(bytes(declined), PEER, 5.1) == [ReferAnswered(call_id, 603, "Decline")]
    assert call_id in agent.calls  # the call goes on


def test_a_refer_never_answered_times_out_with_408() -> None:
    agent, peer = ua(), Peer()
    call_id = answered(agent, peer)
    refer_sent(agent, call_id)
    events = [event for _, event in run_timers(agent)]
    assert ReferAnswered(call_id, 408, "Request Timeout") in events


def test_a_notify_for_another_event_is_489_u24_and_outside_a_dialog_481() -> None:
    agent, peer = ua(), Peer()
    answered(agent, peer)
    other = notify(peer, b"SIP/2.0 200 OK\r\n", "active", event="presence")
    assert agent.receive(other, PEER, 5.0) == [Dropped("NOTIFY for presence", 489)]
    assert statuses(agent) == [489]
    stranger = Peer("call-2")
    stranger.to_tag = "nobody"
    agent.receive(notify(stranger, b"SIP/2.0 200 OK\r\n", "active"), PEER, 5.1)
    assert statuses(agent) == [481]


def test_a_transfer_cannot_start_before_the_call_is_answered() -> None:
    agent = ua()
    call_id, _ = ringing(agent)
    with pytest.raises(RuntimeError, match="cannot transfer"):
        agent.refer(call_id, "sip:desk@192.0.2.20", 1.0)


def test_over_tcp_our_requests_say_so_and_are_not_retransmitted() -> None:
    agent = UserAgent("198.51.100.7", 5060, transport="TCP", new_id=lambda: "id1")
    agent.invite(TARGET, PEER, OFFER, 0.0, reliable=True, caller="sip:desk@voxline.test")
    (outgoing,) = agent.data_to_send()
    invite = parse_message(outgoing.data)
    assert isinstance(invite, SipRequest)
    assert outgoing.reliable
    assert invite.get("Via").startswith("SIP/2.0/TCP 198.51.100.7:5060;")
    assert invite.get("Contact") == "<sip:voxline@198.51.100.7:5060;transport=tcp>"
    assert invite.from_addr.uri == "sip:desk@voxline.test"  # the From asked for
    run_timers(agent, until=10.0)  # timer A does not run over TCP: nothing is sent again
    assert agent.data_to_send() == []
