"""Registration at its edges (transports/sip/registration.py): provisional and superseded answers
are ignored, and a registrar that keeps calling our nonce stale is answered twice at most."""

from __future__ import annotations

from tests.transports.sip.test_registration import CHALLENGE, one, registration, reply
from transports.sip.registration import Registered, RegistrationFailed, RegState

STALE = CHALLENGE + ", stale=true"


def test_a_provisional_answer_and_an_answer_to_a_superseded_request_are_ignored() -> None:
    reg = registration()
    reg.start(0.0)
    first = one(reg)
    assert reply(reg, first, 100, 0.0) == []
    assert reply(reg, first, 401, 0.0, ("WWW-Authenticate", CHALLENGE)) == []
    second = one(reg)
    assert reply(reg, first, 200, 0.0) == []  # the first attempt was superseded
    [registered] = reply(reg, second, 200, 0.0)
    assert isinstance(registered, Registered)
    assert reg.state is RegState.REGISTERED


def test_a_nonce_called_stale_again_and_again_is_answered_twice_then_fails() -> None:
    reg = registration()
    reg.start(0.0)
    request = one(reg)
    assert reply(reg, request, 401, 0.0, ("WWW-Authenticate", CHALLENGE)) == []
    request = one(reg)
    assert reply(reg, request, 401, 0.0, ("WWW-Authenticate", STALE)) == []
    request = one(reg)
    [failed] = reply(reg, request, 401, 0.0, ("WWW-Authenticate", STALE))
    assert isinstance(failed, RegistrationFailed)
    assert failed.status == 401
