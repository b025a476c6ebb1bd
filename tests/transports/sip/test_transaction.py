"""SIP transactions (RFC 3261 §17, RFC 6026): timers A-M on a virtual clock, retransmissions,
absorbed retransmitted requests, the ACK for a non-2xx."""

from __future__ import annotations

import pytest

from transports.sip.message import (
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
)
from transports.sip.transaction import (
    Outgoing,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimeout,
    TxState,
)

PEER = ("192.0.2.4", 5060)


def request(method: str, branch: str = "z9hG4bKone", cseq: int = 1) -> SipRequest:
    return SipRequest(
        method=method,
        uri="sip:bot@voxline.test",
        headers=(
            ("Via", f"SIP/2.0/UDP 192.0.2.4:5060;branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@atlanta.test>;tag=a1"),
            ("To", "<sip:bot@voxline.test>"),
            ("Call-ID", "call-1"),
            ("CSeq", f"{cseq} {method}"),
        ),
    )


def sent(layer: TransactionLayer) -> list[SipRequest | SipResponse]:
    out = []
    for outgoing in layer.data_to_send():
        message = parse_message(outgoing.data)
        assert isinstance(message, SipRequest | SipResponse), message
        out.append(message)
    return out


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, str]]:
    """Fire timers up to ``end``: (time, what was sent or happened) in order."""
    log: list[tuple[float, str]] = []
    while (when := layer.next_timer()) is not None and when <= end:
        events = layer.on_timer(when)
        log += [(when, _name(m)) for m in sent(layer)]
        log += [(when, type(e).__name__) for e in events]
    return log


def _name(message: SipRequest | SipResponse) -> str:
    return message.method if isinstance(message, SipRequest) else str(message.status)


# -- client INVITE ----------------------------------------------------------------------------


def test_an_unanswered_invite_is_resent_on_timer_a_until_timer_b() -> None:
    layer = TransactionLayer()
    layer.send_request(request("INVITE"), PEER, reliable=False, now=0.0)
    assert [_name(m) for m in sent(layer)] == ["INVITE"]
    log = run_until(layer, 100)
    resent = [when for when, what in log if what == "INVITE"]
    assert resent == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert log[-1] == (32.0, "TransactionTimeout")
    assert len(layer) == 0


def test_over_tcp_an_invite_is_never_resent() -> None:
    layer = TransactionLayer()
    layer.send_request(request("INVITE"), PEER, reliable=True, now=0.0)
    sent(layer)
    assert run_until(layer, 100) == [(32.0, "TransactionTimeout")]


def test_a_provisional_stops_timers_a_and_b_a_ringing_phone_may_ring_on() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    layer.send_request(invite, PEER, reliable=False, now=0.0)
    sent(layer)
    events = layer.receive(make_response(invite, 180, to_tag="b"), PEER, False, 0.2)
    assert events == [ResponseReceived(make_response(invite, 180, to_tag="b"), invite)]
    assert run_until(layer, 100) == []
    assert sent(layer) == []  # §17.1.1.2: no retransmission in Proceeding
    assert len(layer) == 1  # the core ends it (its no-answer timer, a CANCEL)


def test_a_non_2xx_final_is_acked_each_time_it_comes_and_passed_up_once() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    layer.send_request(invite, PEER, reliable=False, now=0.0)
    sent(layer)
    busy = make_response(invite, 486, to_tag="b")
    assert len(layer.receive(busy, PEER, False, 0.1)) == 1
    assert layer.receive(busy, PEER, False, 0.6) == []  # retransmitted: absorbed
    ack, again = sent(layer)
    assert isinstance(ack, SipRequest)
    assert bytes(again) == bytes(ack)
    assert (ack.method, ack.uri, ack.cseq.number, ack.cseq.method) == ("ACK", invite.uri, 1, "ACK")
    assert ack.to_addr.tag == "b"  # To from the response
    assert ack.vias == invite.vias  # the same branch: §17.1.1.3
    assert run_until(layer, 100) == []  # timer D: no event
    assert len(layer) == 0


def test_a_2xx_enters_accepted_and_retransmitted_2xx_still_go_up() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    layer.send_request(invite, PEER, reliable=False, now=0.0)
    sent(layer)
    ok = make_response(invite, 200, to_tag="b")
    assert len(layer.receive(ok, PEER, False, 0.1)) == 1
    assert layer.receive(ok, PEER, False, 0.6) == [ResponseReceived(ok, invite)]
    assert sent(layer) == []  # the core ACKs a 2xx, not the transaction
    run_until(layer, 100)  # timer M
    assert len(layer) == 0
    assert layer.receive(ok, PEER, False, 40) == [ResponseReceived(ok, None)]  # stray


# -- client non-INVITE ------------------------------------------------------------------------


def test_a_non_invite_is_resent_on_timer_e_capped_at_t2_until_timer_f() -> None:
    layer = TransactionLayer()
    layer.send_request(request("BYE"), PEER, reliable=False, now=0.0)
    sent(layer)
    log = run_until(layer, 100)
    resent = [when for when, what in log if what == "BYE"]
    assert resent == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log[-1] == (32.0, "TransactionTimeout")


def test_after_a_provisional_timer_e_runs_every_t2() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    layer.send_request(bye, PEER, reliable=False, now=0.0)
    sent(layer)
    layer.receive(make_response(bye, 100), PEER, False, 0.1)
    resent = [when for when, what in run_until(layer, 14) if what == "BYE"]
    assert resent == [0.5, 4.5, 8.5, 12.5]


def test_a_final_response_completes_then_timer_k_forgets() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    layer.send_request(bye, PEER, reliable=False, now=0.0)
    ok = make_response(bye, 200)
    assert layer.receive(ok, PEER, False, 0.1) == [ResponseReceived(ok, bye)]
    assert layer.receive(ok, PEER, False, 0.2) == []
    assert layer.next_timer() == pytest.approx(5.1)  # K = T4
    run_until(layer, 10)
    assert len(layer) == 0


def test_a_branch_cannot_be_used_twice() -> None:
    layer = TransactionLayer()
    layer.send_request(request("BYE"), PEER, reliable=False, now=0.0)
    with pytest.raises(ValueError, match="branch"):
        layer.send_request(request("BYE"), PEER, reliable=False, now=0.0)


def test_an_ack_is_sent_without_a_transaction() -> None:
    layer = TransactionLayer()
    layer.send_request(request("ACK"), PEER, reliable=False, now=0.0)
    assert [_name(m) for m in sent(layer)] == ["ACK"]
    assert layer.next_timer() is None


# -- server INVITE ----------------------------------------------------------------------------


def test_a_new_invite_is_passed_up_and_answered_100_at_once() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    assert layer.receive(invite, PEER, False, 0.0) == [RequestReceived(invite, PEER, False)]
    (trying,) = sent(layer)
    assert isinstance(trying, SipResponse)
    assert trying.status == 100
    assert layer.receive(invite, PEER, False, 0.3) == []  # retransmission: absorbed...
    assert [_name(m) for m in sent(layer)] == ["100"]  # ...and the last provisional resent


def test_a_rejected_invite_resends_its_final_on_timer_g_until_the_ack() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    layer.receive(invite, PEER, False, 0.0)
    layer.respond(invite, make_response(invite, 486, to_tag="b"), 0.0)
    assert [_name(m) for m in sent(layer)] == ["100", "486"]
    log = run_until(layer, 4)
    assert [when for when, what in log if what == "486"] == [0.5, 1.5, 3.5]
    layer.receive(invite, PEER, False, 4.0)  # the INVITE again: the final again
    assert [_name(m) for m in sent(layer)] == ["486"]
    ack = request("ACK")
    assert layer.receive(ack, PEER, False, 4.1) == []  # absorbed by the transaction
    assert layer.server_state(invite) is TxState.CONFIRMED
    assert run_until(layer, 100) == []  # timer I
    assert len(layer) == 0


def test_no_ack_for_a_rejected_invite_times_out_on_timer_h() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    layer.receive(invite, PEER, False, 0.0)
    layer.respond(invite, make_response(invite, 603, to_tag="b"), 0.0)
    log = run_until(layer, 100)
    assert log[-1] == (32.0, "TransactionTimeout")


def test_an_accepted_invite_absorbs_its_retransmissions_until_timer_l() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    layer.receive(invite, PEER, False, 0.0)
    layer.respond(invite, make_response(invite, 200, to_tag="b"), 0.1)
    sent(layer)
    assert layer.receive(invite, PEER, False, 0.6) == []
    assert sent(layer) == []  # the core, not the transaction, resends a 2xx
    ack = request("ACK", branch="z9hG4bKack")  # the ACK for a 2xx is its own transaction
    assert layer.receive(ack, PEER, False, 0.7) == [
        RequestReceived(ack, PEER, False, transaction=False)
    ]
    assert run_until(layer, 100) == []
    assert len(layer) == 0


def test_a_cancel_finds_the_invite_it_cancels() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    layer.receive(invite, PEER, False, 0.0)
    cancel = request("CANCEL")  # same branch, its own method
    assert layer.receive(cancel, PEER, False, 0.1) == [RequestReceived(cancel, PEER, False)]
    assert layer.cancelled_invite(cancel) == invite
    assert layer.cancelled_invite(request("CANCEL", branch="z9hG4bKother")) is None


# -- server non-INVITE ------------------------------------------------------------------------


def test_a_non_invite_server_absorbs_then_resends_its_final_until_timer_j() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    layer.receive(bye, PEER, False, 0.0)
    assert layer.receive(bye, PEER, False, 0.1) == []
    assert sent(layer) == []  # Trying: nothing to resend yet
    layer.respond(bye, make_response(bye, 200), 0.2)
    layer.receive(bye, PEER, False, 0.5)
    assert [_name(m) for m in sent(layer)] == ["200", "200"]
    assert layer.next_timer() == pytest.approx(32.2)
    run_until(layer, 100)
    assert len(layer) == 0


def test_over_tcp_a_server_forgets_at_once() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    layer.receive(bye, PEER, True, 0.0)
    layer.respond(bye, make_response(bye, 200), 0.0)
    assert layer.data_to_send() == [Outgoing(bytes(make_response(bye, 200)), PEER, True)]
    run_until(layer, 0.0)
    assert len(layer) == 0


def test_responding_twice_is_our_error() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    layer.receive(options, PEER, False, 0.0)
    layer.respond(options, make_response(options, 200), 0.0)
    with pytest.raises(RuntimeError):
        layer.respond(options, make_response(options, 500), 0.0)


def test_rfc_2543_requests_without_a_cookie_still_match() -> None:
    layer = TransactionLayer()
    old = request("OPTIONS", branch="1")
    layer.receive(old, PEER, False, 0.0)
    assert layer.receive(old, PEER, False, 0.1) == []
    other = request("OPTIONS", branch="1", cseq=2)
    assert layer.receive(other, PEER, False, 0.2) == [RequestReceived(other, PEER, False)]


def test_timeouts_say_which_side_they_are() -> None:
    layer = TransactionLayer()
    layer.send_request(request("OPTIONS"), PEER, reliable=True, now=0.0)
    assert layer.on_timer(32.0) == [TransactionTimeout(request("OPTIONS"), client=True)]
