"""Keypad digits as the WebSocket protocols carry them: the native (and WebRTC data channel)
``dtmf`` message and Twilio's ``dtmf`` event, checked before they reach a session."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transports.native import MAX_KEYS, Keys, NativeProtocol, PeerError
from transports.rtp.dtmf import EVENTS
from transports.twilio import Dtmf, TwilioProtocol
from transports.webrtc import data_channel_protocol


def opened() -> NativeProtocol:
    protocol = NativeProtocol("s")
    protocol.receive_text(json.dumps({"type": "hello", "sample_rate": 16000}))
    protocol.data_to_send()
    return protocol


def errors(protocol: NativeProtocol) -> list[dict[str, Any]]:
    sent = [json.loads(m) for m in protocol.data_to_send() if isinstance(m, str)]
    return [m for m in sent if m["type"] == "error"]


@pytest.mark.parametrize(
    ("message", "keys"),
    [
        ({"type": "dtmf", "digit": "5"}, "5"),
        ({"type": "dtmf", "digits": "123#"}, "123#"),
        ({"type": "dtmf", "digits": "*0abcd"}, "*0ABCD"),
    ],
)
def test_a_dtmf_message_gives_its_keys_in_order(message: dict[str, str], keys: str) -> None:
    protocol = opened()
    assert protocol.receive_text(json.dumps(message)) == [Keys(keys)]
    assert errors(protocol) == []


@pytest.mark.parametrize(
    "message",
    [
        {"type": "dtmf"},
        {"type": "dtmf", "digit": "1", "digits": "2"},
        {"type": "dtmf", "digit": "12"},
        {"type": "dtmf", "digit": "x"},
        {"type": "dtmf", "digits": ""},
        {"type": "dtmf", "digits": "12e"},
        {"type": "dtmf", "digits": "1" * (MAX_KEYS + 1)},
        {"type": "dtmf", "digit": 5},
    ],
)
def test_a_bad_dtmf_message_gets_an_error_and_the_call_goes_on(message: dict[str, Any]) -> None:
    protocol = opened()
    [event] = protocol.receive_text(json.dumps(message))
    assert isinstance(event, PeerError)
    [error] = errors(protocol)
    assert error["code"] == "bad_message"
    assert protocol.receive_text(json.dumps({"type": "dtmf", "digit": "1"})) == [Keys("1")]


def test_dtmf_before_the_hello_is_refused() -> None:
    protocol = NativeProtocol("s")
    [event] = protocol.receive_text(json.dumps({"type": "dtmf", "digit": "1"}))
    assert isinstance(event, PeerError)
    assert [e["code"] for e in errors(protocol)] == ["hello_required"]


def test_the_webrtc_data_channel_takes_the_same_dtmf_message() -> None:
    protocol = data_channel_protocol("s")
    protocol.data_to_send()
    assert protocol.receive_text(json.dumps({"type": "dtmf", "digits": "42"})) == [Keys("42")]


def test_a_keyed_turn_ends_with_its_digits_and_says_it_was_keyed() -> None:
    protocol = opened()
    protocol.send_turn_ended("0042", 16000, 32000, rule="K1", keypad=True)
    protocol.send_turn_ended("hello", 0, 16000, rule="T5")
    keyed, spoken = [json.loads(m) for m in protocol.data_to_send() if isinstance(m, str)]
    assert keyed == {
        "type": "turn.ended",
        "text": "0042",
        "start_ms": 1000,
        "end_ms": 2000,
        "rule": "K1",
        "keypad": True,
    }
    assert "keypad" not in spoken


@given(st.text(max_size=40))
def test_any_digits_string_is_keys_or_an_error(digits: str) -> None:
    protocol = opened()
    [event] = protocol.receive_text(json.dumps({"type": "dtmf", "digits": digits}))
    valid = 0 < len(digits) <= MAX_KEYS and all(c.upper() in EVENTS for c in digits)
    assert event == Keys(digits.upper()) if valid else isinstance(event, PeerError)


def twilio_dtmf(digit: object) -> str:
    return json.dumps(
        {
            "event": "dtmf",
            "streamSid": "MZ1",
            "sequenceNumber": "5",
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def test_twilio_dtmf_keys_are_checked() -> None:
    protocol = TwilioProtocol()
    protocol.receive_text(json.dumps({"event": "connected", "protocol": "Call"}))
    start = {
        "event": "start",
        "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "callSid": "CA1", "customParameters": {}},
    }
    protocol.receive_text(json.dumps(start))
    assert protocol.receive_text(twilio_dtmf("#")) == [Dtmf("#")]
    assert protocol.receive_text(twilio_dtmf("a")) == [Dtmf("A")]
    for bad in ("x", "12", ""):
        [event] = protocol.receive_text(twilio_dtmf(bad))
        assert isinstance(event, PeerError)
        assert event.code == "bad_dtmf"
