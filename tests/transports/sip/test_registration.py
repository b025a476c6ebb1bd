"""Registration with a registrar (rule ids from transports/sip/registration.py), on a
virtual clock against a scripted registrar: digest challenges, refresh at half the granted
expiry, backoff after failures, un-REGISTER."""

from __future__ import annotations

import itertools

from transports.sip.digest import Credentials, authorization, parse_challenge
from transports.sip.message import SipRequest, SipResponse, make_response, parse_message
from transports.sip.registration import (
    Registered,
    Registration,
    RegistrationEvent,
    RegistrationFailed,
    RegState,
    Unregistered,
)

REGISTRAR = ("192.0.2.10", 5060)
URI = "sip:pbx.example.com"
AOR = "sip:1000@pbx.example.com"
CONTACT = "<sip:1000@198.51.100.7:5060>"
CREDENTIALS = Credentials("1000", "s3cret")
CHALLENGE = 'Digest realm="pbx", nonce="n1", qop="auth", algorithm=MD5'


def registration(credentials: Credentials | None = CREDENTIALS, expires: int = 600) -> Registration:
    counter = itertools.count(1)
    return Registration(
        URI,
        AOR,
        CONTACT,
        REGISTRAR,
        via="198.51.100.7:5060",
        expires=expires,
        credentials=credentials,
        new_id=lambda: f"id{next(counter)}",
    )


def sent(reg: Registration) -> list[SipRequest]:
    out = []
    for outgoing in reg.data_to_send():
        assert outgoing.peer == REGISTRAR
        message = parse_message(outgoing.data)
        assert isinstance(message, SipRequest)
        out.append(message)
    return out


def one(reg: Registration) -> SipRequest:
    (request,) = sent(reg)
    assert request.method == "REGISTER"
    return request


def reply(
    reg: Registration, request: SipRequest, status: int, now: float, *headers: tuple[str, str]
) -> list[RegistrationEvent]:
    response = make_response(request, status, to_tag="reg", headers=headers)
    assert reg.owns(response)
    return reg.receive(response, REGISTRAR, now)


def challenged_then_ok(reg: Registration, now: float, *ok: tuple[str, str]) -> SipRequest:
    first = one(reg)
    assert not first.has("Authorization")
    assert reply(reg, first, 401, now, ("WWW-Authenticate", CHALLENGE)) == []
    second = one(reg)
    assert second.cseq.number == first.cseq.number + 1
    assert second.vias[0].branch != first.vias[0].branch
    events = reply(reg, second, 200, now, *ok)
    assert reg.state is RegState.REGISTERED, events
    return second


def test_r1_the_first_register_carries_the_binding_and_no_credentials() -> None:
    reg = registration()
    reg.start(0.0)
    request = one(reg)
    assert request.uri == URI
    assert request.from_addr.uri == request.to_addr.uri == AOR
    assert request.from_addr.tag
    assert not request.to_addr.tag
    assert request.get("Contact") == f"{CONTACT};expires=600"
    assert request.get("Expires") == "600"
    assert request.cseq.method == "REGISTER"


def test_r2_a_401_is_answered_with_digest_for_register_and_the_registrar_uri() -> None:
    reg = registration()
    reg.start(0.0)
    second = challenged_then_ok(reg, 0.1, ("Expires", "600"))
    challenge = parse_challenge(CHALLENGE)
    assert challenge is not None
    expected = authorization(challenge, CREDENTIALS, "REGISTER", URI, cnonce="id4")
    assert second.get("Authorization") == expected
    assert second.call_id == reg.call_id


def test_r2_a_407_is_answered_with_proxy_authorization() -> None:
    reg = registration()
    reg.start(0.0)
    first = one(reg)
    reply(reg, first, 407, 0.1, ("Proxy-Authenticate", CHALLENGE))
    assert one(reg).get("Proxy-Authorization").startswith("Digest ")


def test_r3_the_granted_expiry_is_our_contacts_and_the_refresh_is_at_half_of_it() -> None:
    reg = registration()
    reg.start(0.0)
    first = one(reg)
    contact = (
        "Contact",
        "<sip:other@192.0.2.99>;expires=30, <sip:1000@198.51.100.7:5060>;expires=120",
    )
    assert reply(reg, first, 200, 1.0, contact, ("Expires", "3600")) == [Registered(120)]
    assert reg.refresh_at == 61.0
    assert reg.on_timer(60.9) == []
    assert reg.data_to_send() == []
    assert reg.on_timer(61.0) == []  # R6
    refresh = one(reg)
    assert refresh.call_id == first.call_id
    assert refresh.cseq.number == first.cseq.number + 1
    assert reply(reg, refresh, 200, 61.5, ("Expires", "90")) == [Registered(90)]
    assert reg.refresh_at == 61.5 + 45


def test_r3_with_no_expiry_in_the_2xx_what_we_asked_is_granted() -> None:
    reg = registration(expires=300)
    reg.start(0.0)
    assert reply(reg, one(reg), 200, 0.0) == [Registered(300)]


def test_r4_a_423_asks_again_with_min_expires() -> None:
    reg = registration(expires=60)
    reg.start(0.0)
    assert reply(reg, one(reg), 423, 0.1, ("Min-Expires", "3600")) == []
    again = one(reg)
    assert again.get("Expires") == "3600"
    assert reply(reg, again, 200, 0.2) == [Registered(3600)]


def test_r5_wrong_credentials_fail_and_are_retried_with_a_doubling_backoff() -> None:
    reg = registration()
    reg.start(0.0)
    reply(reg, one(reg), 401, 0.0, ("WWW-Authenticate", CHALLENGE))
    events = reply(reg, one(reg), 401, 0.1, ("WWW-Authenticate", CHALLENGE))
    assert events == [RegistrationFailed(401, "Unknown", 5.0)]
    assert reg.state is RegState.WAITING
    assert reg.retry_at == 5.1
    reg.on_timer(5.1)  # R7
    first = one(reg)
    assert not first.has("Authorization")
    events = reply(reg, first, 403, 5.2)
    assert events == [RegistrationFailed(403, "Forbidden", 10.0)]


def test_r5_a_challenge_with_no_credentials_fails() -> None:
    reg = registration(credentials=None)
    reg.start(0.0)
    events = reply(reg, one(reg), 401, 0.0, ("WWW-Authenticate", CHALLENGE))
    assert events == [RegistrationFailed(401, "Unknown", 5.0)]


def test_r2_a_stale_nonce_is_answered_again() -> None:
    reg = registration()
    reg.start(0.0)
    reply(reg, one(reg), 401, 0.0, ("WWW-Authenticate", CHALLENGE))
    stale = CHALLENGE.replace('"n1"', '"n2"') + ", stale=true"
    assert reply(reg, one(reg), 401, 0.1, ("WWW-Authenticate", stale)) == []
    assert 'nonce="n2"' in one(reg).get("Authorization")


def test_r5_no_answer_retransmits_over_udp_then_fails_as_408_and_the_backoff_caps() -> None:
    reg = registration(credentials=None)
    reg.start(0.0)
    one(reg)
    failures: list[RegistrationEvent] = []
    resent = 0
    while (when := reg.next_timer()) is not None and when < 2000:
        failures += reg.on_timer(when)
        resent += len(sent(reg))
    assert resent > 10  # timer E, then every attempt's
    retries = [e.retry_in for e in failures if isinstance(e, RegistrationFailed)]
    assert retries[:7] == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0]
    assert all(e.status == 408 for e in failures if isinstance(e, RegistrationFailed))


def test_r5_a_refresh_that_fails_keeps_the_binding_and_is_retried() -> None:
    reg = registration(credentials=None)
    reg.start(0.0)
    reply(reg, one(reg), 200, 0.0, ("Expires", "100"))
    reg.on_timer(50.0)  # asks for 600 again
    assert reply(reg, one(reg), 500, 50.0) == [
        RegistrationFailed(500, "Server Internal Error", 5.0)
    ]
    assert reg.granted == 100
    reg.on_timer(55.0)
    assert reply(reg, one(reg), 200, 55.0, ("Expires", "100")) == [Registered(100)]


def test_r8_stop_unregisters_with_expires_0_and_r9_ends_on_the_answer() -> None:
    reg = registration()
    reg.start(0.0)
    challenged_then_ok(reg, 0.0, ("Expires", "600"))
    reg.stop(10.0)
    bye = one(reg)
    assert bye.get("Expires") == "0"
    assert bye.get("Contact") == f"{CONTACT};expires=0"
    assert reply(reg, bye, 401, 10.1, ("WWW-Authenticate", CHALLENGE)) == []
    authed = one(reg)
    assert authed.get("Expires") == "0"
    assert authed.has("Authorization")
    states = [reg.state]
    assert reply(reg, authed, 200, 10.2) == [Unregistered(200)]
    states.append(reg.state)
    assert states == [RegState.UNREGISTERING, RegState.DONE]
    reg.on_timer(20.0)  # timer K
    assert reg.next_timer() is None


def test_r8_stop_before_any_binding_sends_nothing() -> None:
    reg = registration(credentials=None)
    reg.stop(0.0)
    assert reg.done
    assert reg.data_to_send() == []
    reg = registration(credentials=None)
    reg.start(0.0)
    reply(reg, one(reg), 403, 0.0)
    reg.stop(1.0)
    assert reg.done
    assert reg.data_to_send() == []


def test_r9_an_unregister_with_no_answer_ends_after_timer_f() -> None:
    reg = registration()
    reg.start(0.0)
    reply(reg, one(reg), 200, 0.0)
    reg.stop(1.0)
    events: list[RegistrationEvent] = []
    while (when := reg.next_timer()) is not None:
        events += reg.on_timer(when)
    assert events == [Unregistered(408)]
    assert reg.done


def test_responses_of_other_calls_and_superseded_attempts_are_not_ours_or_ignored() -> None:
    reg = registration()
    reg.start(0.0)
    first = one(reg)
    other = SipResponse(
        headers=(("Call-ID", "elsewhere"), ("CSeq", "1 REGISTER"), ("Via", first.get("Via"))),
        status=200,
    )
    assert not reg.owns(other)
    assert not reg.owns(first)
    reply(reg, first, 401, 0.0, ("WWW-Authenticate", CHALLENGE))
    one(reg)
    assert reply(reg, first, 200, 0.1) == []  # the first attempt's transaction is over
    assert reg.state is RegState.REGISTERING
