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
