"""Transfers on the wire, sans-I/O: the native protocol's ``transfer`` / ``transfer.result``,
and the Twilio REST request that dials the target."""

from __future__ import annotations

import json

import pytest

from transports.native import NativeProtocol, PeerError, TransferOutcome
from transports.twilio_rest import DialRequest, dial_outcome, dial_request

ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "f" * 32


def opened(transfer: bool) -> NativeProtocol:
    protocol = NativeProtocol("s")
    hello = {"type": "hello", "sample_rate": 16000, "transfer": transfer}
    protocol.receive_text(json.dumps(hello))
    protocol.data_to_send()
    return protocol


def test_a_transfer_is_sent_and_its_one_result_comes_back() -> None:
    protocol = opened(transfer=True)
    protocol.send_transfer("operator")
    assert [json.loads(m) for m in protocol.data_to_send()] == [
        {"type": "transfer", "target": "operator"}
    ]
    result = json.dumps({"type": "transfer.result", "ok": False, "reason": "busy"})
    assert protocol.receive_text(result) == [TransferOutcome(False, "busy")]
    [late] = protocol.receive_text(result)  # nothing waits for a second one
    assert isinstance(late, PeerError)
    assert late.code == "no_transfer"


def test_a_client_that_did_not_offer_transfers_is_never_sent_one() -> None:
    protocol = opened(transfer=False)
    assert protocol.transfers is False
    with pytest.raises(RuntimeError, match="does not carry out transfers"):
        protocol.send_transfer("operator")
    assert protocol.data_to_send() == []


def test_the_dial_request_escapes_the_target_and_authenticates() -> None:
    request = dial_request("http://api/", ACCOUNT, "t", CALL, "sales & <support>")
    assert isinstance(request, DialRequest)
    assert request.url == f"http://api/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert request.body == (
        b"Twiml=%3CResponse%3E%3CDial%3Esales+%26amp%3B+%26lt%3Bsupport%26gt%3B"
        b"%3C%2FDial%3E%3C%2FResponse%3E"
    )
    assert request.headers["authorization"].startswith("Basic ")


def test_no_request_without_credentials_or_a_call() -> None:
    assert dial_request("http://api", "", "t", CALL, "x") == "no_credentials"
    assert dial_request("http://api", ACCOUNT, "t", "CA/../x", "x") == "no_call"
    assert (dial_outcome(204), dial_outcome(404)) == ("", "HTTP 404")
