"""SIP messages: parsing by RFC 3261 rule, a torture set after RFC 4475, framing, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transports.sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    CSeq,
    NameAddr,
    ParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    Via,
    canonical_name,
    make_response,
    parse_message,
    split_list,
)

INVITE = (
    b"INVITE sip:bot@voxline.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@atlanta.test>;tag=1928301774\r\n'
    b"To: <sip:bot@voxline.test>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.test\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.4>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def parsed(data: bytes) -> SipRequest | SipResponse:
    message = parse_message(data)
    assert not isinstance(message, ParseError), message
    return message


def request(data: bytes) -> SipRequest:
    message = parsed(data)
    assert isinstance(message, SipRequest)
    return message


# -- §7, §20: what a well-formed request gives ----------------------------------------------


def test_a_request_gives_its_start_line_headers_and_body() -> None:
    invite = request(INVITE)
    assert (invite.method, invite.uri) == ("INVITE", "sip:bot@voxline.test")
    assert invite.call_id == "a84b4c76e66710@pc33.atlanta.test"
    assert invite.cseq == CSeq(314159, "INVITE")
    assert invite.max_forwards == 70
    assert invite.from_addr == NameAddr("sip:alice@atlanta.test", "Alice", {"tag": "1928301774"})
    assert invite.to_addr.tag == ""
    assert invite.contact == NameAddr("sip:alice@192.0.2.4")
    (via,) = invite.vias
    assert via == Via("UDP", "192.0.2.4", 5060, {"branch": "z9hG4bK776asdhds", "rport": ""})
    assert invite.body == b"v=0\n"


def test_a_response_gives_its_status_and_reason() -> None:
    data = INVITE.replace(b"INVITE sip:bot@voxline.test SIP/2.0", b"SIP/2.0 180 Ringing")
    ringing = parsed(data)
    assert isinstance(ringing, SipResponse)
    assert (ringing.status, ringing.reason) == (180, "Ringing")


def test_names_are_case_insensitive_and_compact_forms_expand() -> None:
    data = (
        b"OPTIONS sip:bot@voxline.test SIP/2.0\r\n"
        b"v: SIP/2.0/TCP client.test;branch=z9hG4bKa\r\n"
        b"f: <sip:a@b.test>;tag=x\r\nt: sip:bot@voxline.test\r\n"
        b"i: abc\r\ncSEQ: 1 OPTIONS\r\nl: 0\r\n\r\n"
    )
    options = request(data)
    assert options.call_id == options.get("CALL-id") == "abc"
    assert options.to_addr.uri == "sip:bot@voxline.test"
    assert options.vias[0].transport == "TCP"
    assert options.vias[0].port is None


def test_folded_lines_and_bare_lf_are_read_m8() -> None:
    data = INVITE.replace(b"\r\n", b"\n").replace(b"Max-Forwards: 70", b"Max-Forwards:\n  70")
    data = data.replace(b"Subject", b"")
    invite = request(data.replace(b"Contact: ", b"Subject: hello\n\tthere\nContact: "))
    assert invite.max_forwards == 70
    assert invite.get("subject") == "hello there"


def test_several_values_on_one_line_or_several_lines_are_the_same_list() -> None:
    two_lines = INVITE.replace(
        b"Max-Forwards", b"Via: SIP/2.0/UDP proxy.test;branch=z9hG4bKp\r\nMax-Forwards"
    )
    one_line = INVITE.replace(b";rport\r\n", b";rport, SIP/2.0/UDP proxy.test;branch=z9hG4bKp\r\n")
    assert [v.host for v in request(two_lines).vias] == ["192.0.2.4", "proxy.test"]
    assert [v.host for v in request(one_line).vias] == ["192.0.2.4", "proxy.test"]


def test_commas_inside_quotes_and_brackets_do_not_split() -> None:
    assert split_list('"Doe, J" <sip:j@x;a=1,2>, <sip:k@y>') == [
        '"Doe, J" <sip:j@x;a=1,2>',
        "<sip:k@y>",
    ]


def test_an_addr_spec_without_brackets_keeps_its_tag_as_a_header_param() -> None:
    assert NameAddr.parse("sip:a@b.test;tag=77") == NameAddr("sip:a@b.test", "", {"tag": "77"})


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("i", "Call-ID"), ("CSEQ", "CSeq"), ("max-forwards", "Max-Forwards"), ("x-foo", "X-Foo")],
)
def test_canonical_names(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


def test_an_unknown_method_is_accepted_m9() -> None:
    data = INVITE.replace(b"INVITE", b"NEWMETHOD")
    assert request(data).method == "NEWMETHOD"


def test_a_longer_datagram_than_content_length_is_cut_m7() -> None:
    assert request(INVITE + b"trailing junk").body == b"v=0\n"


def test_no_content_length_on_a_datagram_takes_the_rest() -> None:
    data = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert request(data).body == b"v=0\n"


def test_leading_crlfs_are_ignored() -> None:
    assert request(b"\r\n\r\n" + INVITE).method == "INVITE"


# -- the torture set (after RFC 4475) ---------------------------------------------------------

TORTURE = [
    # (name, data, rule, status, answerable)
    ("garbage", b"\x00\x01hello", "M2", None, False),
    ("no empty line", INVITE.split(b"\r\n\r\n")[0], "M2", None, False),
    ("start line with two spaces", INVITE.replace(b"INVITE sip", b"INVITE  sip"), "M2", None, 0),
    ("no version", INVITE.replace(b" SIP/2.0\r\nVia", b"\r\nVia"), "M2", None, False),
    ("not utf-8", INVITE.replace(b"Alice", b"\xff\xfe"), "M2", None, False),
    ("version 7", INVITE.replace(b"SIP/2.0\r\nVia", b"SIP/7.0\r\nVia"), "M3", 505, True),
    (
        "header without colon",
        INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards 70"),
        "M4",
        400,
        True,
    ),
    ("header name with space", INVITE.replace(b"Max-Forwards", b"Max Forwards"), "M4", 400, True),
    (
        "no Call-ID",
        INVITE.replace(b"Call-ID: a84b4c76e66710@pc33.atlanta.test\r\n", b""),
        "M5",
        400,
        False,
    ),
    ("no CSeq", INVITE.replace(b"CSeq: 314159 INVITE\r\n", b""), "M5", 400, False),
    ("CSeq not a number", INVITE.replace(b"314159", b"-1"), "M5", 400, False),
    ("CSeq too large", INVITE.replace(b"314159", b"2147483648"), "M5", 400, False),
    ("CSeq method mismatch", INVITE.replace(b"314159 INVITE", b"314159 BYE"), "M5", 400, True),
    ("no Via", INVITE.replace(b"Via: ", b"X-Via: "), "M5", 400, False),
    ("bad Via", INVITE.replace(b"SIP/2.0/UDP", b"SIP/3.0/UDP"), "M5", 400, False),
    ("Via port out of range", INVITE.replace(b":5060", b":70000"), "M5", 400, False),
    (
        "bad Contact",
        INVITE.replace(b"Contact: <sip:alice@192.0.2.4>", b"Contact: <sip:a"),
        "M5",
        400,
        True,
    ),
    ("unclosed From", INVITE.replace(b"atlanta.test>;", b"atlanta.test;"), "M5", 400, False),
    (
        "Max-Forwards not a number",
        INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: x"),
        "M5",
        400,
        True,
    ),
    ("Call-ID twice", INVITE.replace(b"CSeq:", b"i: other@pc33\r\nCSeq:"), "M5", 400, True),
    ("CSeq twice", INVITE.replace(b"CSeq:", b"CSeq: 1 INVITE\r\nCSeq:"), "M5", 400, True),
    ("To twice", INVITE.replace(b"To:", b"t: <sip:x@voxline.test>\r\nTo:"), "M5", 400, True),
    (
        "Content-Length twice, the same",
        INVITE.replace(b"Content-Length: 4", b"Content-Length: 4\r\nl: 4"),
        "M5",
        400,
        True,
    ),
    ("Content-Length too long", INVITE.replace(b"Length: 4", b"Length: 400"), "M6", 400, True),
    ("Content-Length negative", INVITE.replace(b"Length: 4", b"Length: -4"), "M6", 400, True),
    ("Content-Length not a number", INVITE.replace(b"Length: 4", b"Length: four"), "M6", 400, True),
    ("too large", INVITE + b"x" * MAX_MESSAGE_SIZE, "M1", 513, False),
    (
        "too many headers",
        INVITE.replace(b"\r\n\r\n", b"\r\nX-A: 1" * MAX_HEADERS + b"\r\n\r\n"),
        "M1",
        513,
        False,
    ),
]


@pytest.mark.parametrize(
    ("data", "rule", "status", "answerable"),
    [case[1:] for case in TORTURE],
    ids=[case[0] for case in TORTURE],
)
def test_torture(data: bytes, rule: str, status: int | None, answerable: bool) -> None:
    error = parse_message(data)
    assert isinstance(error, ParseError)
    assert (error.rule, error.status) == (rule, status)
    assert (error.request is not None) == bool(answerable)
    if error.request is not None and status is not None:
        reply = make_response(error.request, status)
        again = parse_message(bytes(reply))  # the answer is itself well formed
        assert isinstance(again, SipResponse)
        assert bytes(again) == bytes(reply)


def test_a_broken_response_is_never_answered() -> None:
    data = INVITE.replace(b"INVITE sip:bot@voxline.test SIP/2.0", b"SIP/2.0 200 OK")
    error = parse_message(data.replace(b"Length: 4", b"Length: 99"))
    assert isinstance(error, ParseError)
    assert (error.rule, error.status, error.request) == ("M6", None, None)


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_give_a_parse_error(data: bytes) -> None:
    assert isinstance(parse_message(data), SipRequest | SipResponse | ParseError)


@given(st.integers(0, len(INVITE) - 1), st.binary(min_size=1, max_size=8))
def test_any_splice_into_a_good_message_never_raises(at: int, junk: bytes) -> None:
    assert isinstance(parse_message(INVITE[:at] + junk + INVITE[at:]), SipRequest | ParseError)


# -- serialising and responses --------------------------------------------------------------


def test_a_message_round_trips_through_bytes() -> None:
    invite = request(INVITE)
    again = request(bytes(invite))
    assert again == invite


def test_serialising_writes_content_length_from_the_body() -> None:
    invite = SipRequest(method="OPTIONS", uri="sip:x@y", headers=(("Content-Length", "99"),))
    assert bytes(invite).endswith(b"Content-Length: 0\r\n\r\n")


def test_a_response_copies_what_8_2_6_says_and_adds_the_to_tag() -> None:
    invite = request(INVITE)
    ok = make_response(invite, 200, to_tag="bot1", headers=[("Contact", "<sip:bot@h>")])
    assert (ok.status, ok.reason) == (200, "OK")
    assert ok.vias == invite.vias
    assert ok.from_addr == invite.from_addr
    assert ok.to_addr.tag == "bot1"
    assert (ok.call_id, ok.cseq) == (invite.call_id, invite.cseq)
    assert make_response(invite, 100, to_tag="bot1").to_addr.tag == ""


def test_replace_swaps_every_value_of_a_header() -> None:
    invite = request(INVITE).replace("contact", "<sip:new@h>")
    assert invite.get_all("Contact") == ["<sip:new@h>"]


# -- framing a stream (§18.3) -----------------------------------------------------------------


def test_a_stream_of_messages_and_keepalives_is_cut_by_content_length() -> None:
    framer = StreamFramer()
    out = framer.feed(b"\r\n\r\n" + INVITE + INVITE)
    assert [m.call_id for m in out if isinstance(m, SipRequest)] == [request(INVITE).call_id] * 2


@given(st.lists(st.integers(1, 60), max_size=40))
def test_any_chunking_of_a_stream_gives_the_same_messages(cuts: list[int]) -> None:
    data = INVITE + b"\r\n\r\n" + INVITE.replace(b"314159", b"314160") + INVITE
    framer, out, at = StreamFramer(), [], 0
    for size in cuts:
        out += framer.feed(data[at : at + size])
        at += size
    out += framer.feed(data[at:])
    assert out == StreamFramer().feed(data)
    assert [m.cseq.number for m in out if isinstance(m, SipRequest)] == [314159, 314160, 314159]


def test_a_bad_content_length_breaks_the_stream() -> None:
    framer = StreamFramer()
    (error,) = framer.feed(INVITE.replace(b"Length: 4", b"Length: x"))
    assert isinstance(error, ParseError)
    assert framer.broken == error
    assert framer.feed(INVITE) == []


def test_an_endless_header_block_breaks_the_stream() -> None:
    framer = StreamFramer()
    assert framer.feed(b"X" * (MAX_MESSAGE_SIZE + 1)) != []
    assert framer.broken is not None


def test_one_byte_at_a_time_gives_what_the_whole_gives() -> None:
    data = INVITE + b"\r\n" + INVITE
    framer = StreamFramer()
    out = [m for i in range(len(data)) for m in framer.feed(data[i : i + 1])]
    assert out == StreamFramer().feed(data)
    assert len(out) == 2
