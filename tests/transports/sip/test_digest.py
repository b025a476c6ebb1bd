"""Digest answers (transports/sip/digest.py) against the RFCs' own worked examples, and the
challenges we answer or leave."""

from __future__ import annotations

import pytest

from transports.sip.bodies import dtmf_digit, sipfrag_status
from transports.sip.digest import (
    Challenge,
    Credentials,
    authorization,
    parse_challenge,
    pick_challenge,
)


def field(header: str, name: str) -> str:
    for part in header.removeprefix("Digest ").split(", "):
        key, _, value = part.partition("=")
        if key == name:
            return value.strip('"')
    raise KeyError(name)


def test_rfc_2617_section_3_5_md5_with_qop_auth() -> None:
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert challenge == Challenge(
        "testrealm@host.com",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "MD5",
        "auth",
        "5ccc069c403ebaf9f0171e9517f40e41",
    )
    header = authorization(
        challenge,
        Credentials("Mufasa", "Circle Of Life"),
        "GET",
        "/dir/index.html",
        cnonce="0a4f113b",
    )
    assert field(header, "response") == "6629fae49393a05397450978507c4ef1"
    assert (field(header, "nc"), field(header, "qop")) == ("00000001", "auth")
    assert field(header, "opaque") == "5ccc069c403ebaf9f0171e9517f40e41"


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc_7616_section_3_9_1(algorithm: str, response: str) -> None:
    challenge = parse_challenge(
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    assert challenge is not None
    header = authorization(
        challenge,
        Credentials("Mufasa", "Circle of Life"),
        "GET",
        "/dir/index.html",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert field(header, "response") == response
    assert field(header, "algorithm") == algorithm


def test_without_qop_the_rfc_2069_answer_has_no_client_nonce() -> None:
    challenge = parse_challenge('Digest realm="pbx", nonce="n1"')
    assert challenge is not None
    header = authorization(challenge, Credentials("a", "b"), "INVITE", "sip:x@y", cnonce="c")
    assert "cnonce" not in header
    assert "qop" not in header
    assert len(field(header, "response")) == 32


def test_session_variants_and_auth_int_change_the_answer() -> None:
    credentials = Credentials("a", "b")
    answers = set()
    for value in (
        'Digest realm="r", nonce="n", qop="auth"',
        'Digest realm="r", nonce="n", qop="auth", algorithm=MD5-sess',
        'Digest realm="r", nonce="n", qop="auth-int"',
        'Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256-sess',
    ):
        challenge = parse_challenge(value)
        assert challenge is not None
        header = authorization(challenge, credentials, "INVITE", "sip:x@y", cnonce="c", body=b"v")
        answers.add(field(header, "response"))
    assert len(answers) == 4


@pytest.mark.parametrize(
    "value",
    [
        'Basic realm="r"',
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n", qop="auth-conf"',
        'Digest nonce="n"',
        'Digest realm="r"',
        "Digest",
        "",
        'Digest realm="r, nonce="n"',
    ],
)
def test_challenges_we_cannot_answer_are_none(value: str) -> None:
    assert parse_challenge(value) is None


def test_the_strongest_challenge_is_picked_and_quotes_are_escaped() -> None:
    md5 = 'Digest realm="r", nonce="n1"'
    sha = 'Digest realm="r", nonce="n2", algorithm=SHA-256'
    picked = pick_challenge([md5, sha, "Basic x"], proxy=True)
    assert picked is not None
    assert (picked.nonce, picked.header) == ("n2", "Proxy-Authorization")
    assert pick_challenge(["Basic x"]) is None
    quoted = parse_challenge(r'Digest realm="a \"b\"", nonce="n"')
    assert quoted is not None
    assert quoted.realm == 'a "b"'
    header = authorization(quoted, Credentials('u"v', "p"), "INVITE", "sip:x", cnonce="c")
    assert r'realm="a \"b\""' in header
    assert r'username="u\"v"' in header


def test_the_password_stays_out_of_repr() -> None:
    assert "s3cret" not in repr(Credentials("me", "s3cret"))


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay", b"Signal= a\r\n", "A"),
        ("application/dtmf", b"#", "#"),
        ("application/dtmf-relay", b"Duration=160", ""),
        ("text/plain", b"5", ""),
    ],
)
def test_dtmf_info_bodies(content_type: str, body: bytes, digit: str) -> None:
    assert dtmf_digit(content_type, body) == digit


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"SIP/2.0 200 OK\r\n", 200),
        (b"SIP/2.0 100 Trying", 100),
        (b"  SIP/2.0 486 Busy Here\r\nVia: x\r\n", 486),
        (b"SIP/2.0 99 Odd\r\n", None),
        (b"INVITE sip:x SIP/2.0\r\n", None),
        (b"\xff\xfe", None),
        (b"", None),
    ],
)
def test_sipfrag_status(body: bytes, status: int | None) -> None:
    assert sipfrag_status(body) == status
