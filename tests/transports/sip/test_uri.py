"""Where a call we place goes (transports/sip/uri.py)."""

from __future__ import annotations

import pytest

from transports.sip.uri import Target, UriError, parse_target


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("sip:alice@10.0.0.7", Target("sip:alice@10.0.0.7", "alice", "10.0.0.7", 5060)),
        (
            "sip:200@pbx.example:5080",
            Target("sip:200@pbx.example:5080", "200", "pbx.example", 5080),
        ),
        (
            "sip:pbx.example;transport=udp",
            Target("sip:pbx.example;transport=udp", "", "pbx.example", 5060),
        ),
        ("  sip:b@[::1]:5062 ", Target("sip:b@[::1]:5062", "b", "::1", 5062)),
    ],
)
def test_targets(text: str, target: Target) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tel:+15551234", "tel: URIs are not supported"),
        ("sips:a@b", "sips: URIs are not supported"),
        ("alice@10.0.0.7", "not a SIP URI"),
        ("sip:", "not a SIP URI"),
        ("sip:a@b c", "not a SIP URI"),
        ("sip:a@b:0", "out of range"),
        ("sip:a@b:70000", "out of range"),
    ],
)
def test_what_is_not_a_target(text: str, problem: str) -> None:
    error = parse_target(text)
    assert isinstance(error, UriError)
    assert problem in error.reason


@pytest.mark.parametrize(
    ("text", "transport"),
    [
        ("sip:alice@10.0.0.7", "udp"),
        ("sip:alice@10.0.0.7:5080;transport=tcp", "tcp"),
        ("sip:alice@10.0.0.7;lr;Transport=TCP", "tcp"),  # parameter names and values: any case
        ("sip:alice@10.0.0.7;transport=udp;lr", "udp"),
        ("sip:alice@10.0.0.7?subject=transport=tcp", "udp"),  # a header, not a parameter
    ],
)
def test_the_transport_parameter_picks_the_transport_rfc_3263(text: str, transport: str) -> None:
    target = parse_target(text)
    assert isinstance(target, Target)
    assert target.transport == transport


@pytest.mark.parametrize(
    "text", ["sip:a@b;transport=tls", "sip:a@b;transport=sctp", "sip:a@b;transport="]
)
def test_a_transport_we_do_not_speak_is_refused(text: str) -> None:
    error = parse_target(text)
    assert isinstance(error, UriError)
    assert "is not supported (use udp or tcp)" in error.reason
