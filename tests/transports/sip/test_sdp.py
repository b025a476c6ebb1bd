"""SDP: parsing (RFC 4566), the audio offer/answer (RFC 3264), hold, 488 and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transports.sip.sdp import (
    PCMA,
    PCMU,
    Codec,
    Negotiated,
    Origin,
    SdpError,
    SessionDescription,
    accept_answer,
    answer_offer,
    make_offer,
    parse_sdp,
)

OURS = Origin("voxline", 42, 1, "198.51.100.7")

# what a softphone typically offers (Opus first, which we do not take)
OFFER = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.4\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.4\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 96 8 0 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)


def sdp(text: str) -> SessionDescription:
    parsed = parse_sdp(text)
    assert isinstance(parsed, SessionDescription), parsed
    return parsed


def answered(text: str, *, hold: bool = False) -> tuple[SessionDescription, Negotiated]:
    result = answer_offer(sdp(text), OURS, 40000, hold=hold)
    assert not isinstance(result, SdpError), result
    return result


def test_an_offer_is_read() -> None:
    offer = sdp(OFFER)
    assert offer.origin == Origin("alice", 2890844526, 2890844526, "192.0.2.4")
    (audio,) = offer.media
    assert (audio.kind, audio.port, audio.formats) == ("audio", 49170, ("96", "8", "0", "101"))
    assert audio.codecs()[0] == PCMU  # static, no rtpmap needed
    assert audio.codecs()[101] == Codec(101, "telephone-event")
    assert (audio.direction, audio.ptime) == ("sendrecv", 20)


def test_the_callers_codec_order_is_respected_s2() -> None:
    answer, agreed = answered(OFFER)
    assert agreed.codec == PCMA  # the first the caller listed that we support
    assert answer.media[0].formats == ("8", "101")
    swapped = OFFER.replace("96 8 0 101", "0 8 101")
    assert answered(swapped)[1].codec == PCMU


def test_telephone_event_keeps_the_offered_payload_type_s3() -> None:
    _, agreed = answered(OFFER.replace("101", "97"))
    assert agreed.dtmf == 97
    _, without = answered(OFFER.replace(" 101", "").replace("a=rtpmap:101", "a=x:"))
    assert without.dtmf is None


def test_the_answer_says_where_to_send_and_parses_back() -> None:
    answer, agreed = answered(OFFER)
    assert (agreed.address, agreed.port, agreed.direction) == ("192.0.2.4", 49170, "sendrecv")
    again = sdp(str(answer))
    assert again == answer
    assert again.media[0].port == 40000
    assert again.connection == "198.51.100.7"


@pytest.mark.parametrize(
    ("offered", "ours", "sending", "receiving"),
    [
        ("a=sendrecv", "sendrecv", True, True),
        ("a=sendonly", "recvonly", False, True),
        ("a=recvonly", "sendonly", True, False),
        ("a=inactive", "inactive", False, False),
    ],
)
def test_directions_are_reversed_s4(
    offered: str, ours: str, sending: bool, receiving: bool
) -> None:
    answer, agreed = answered(OFFER.replace("a=sendrecv", offered))
    assert (agreed.direction, agreed.sending, agreed.receiving) == (ours, sending, receiving)
    assert answer.media[0].direction == ours


def test_an_old_style_hold_with_address_zero_stops_our_sending_s4() -> None:
    _, agreed = answered(OFFER.replace("c=IN IP4 192.0.2.4", "c=IN IP4 0.0.0.0"))
    assert agreed.direction == "recvonly"
    assert not agreed.sending


def test_our_own_hold_answers_recvonly() -> None:
    assert answered(OFFER, hold=True)[1].direction == "recvonly"


def test_other_streams_get_port_zero_in_order_s5() -> None:
    video = "m=video 5000 RTP/AVP 31\r\nc=IN IP4 192.0.2.4\r\n"
    offer = OFFER.replace("t=0 0\r\n", "t=0 0\r\n" + video) + "m=audio 6000 RTP/AVP 0\r\n"
    answer, agreed = answered(offer)
    assert [(m.kind, m.port) for m in answer.media] == [
        ("video", 0),
        ("audio", 40000),
        ("audio", 0),
    ]
    assert agreed.port == 49170


@pytest.mark.parametrize(
    "offer",
    [
        OFFER.replace("96 8 0 101", "96 101"),  # only Opus and DTMF
        OFFER.replace("m=audio 49170", "m=audio 0"),  # the stream is disabled
        OFFER.replace("RTP/AVP", "RTP/SAVP"),  # SRTP only
        OFFER.replace("m=audio", "m=video"),
        OFFER.split("m=")[0],  # no media at all
    ],
    ids=["no common codec", "port zero", "srtp", "video only", "no media"],
)
def test_nothing_we_support_is_488_s6(offer: str) -> None:
    result = answer_offer(sdp(offer), OURS, 40000)
    assert isinstance(result, SdpError)
    assert (result.rule, result.status) == ("S6", 488)


GARBAGE = {
    "empty": "",
    "binary": b"\xff\xfe\x00",
    "no v": OFFER.replace("v=0\r\n", ""),
    "v=1": OFFER.replace("v=0", "v=1"),
    "no o": OFFER.replace("o=alice 2890844526 2890844526 IN IP4 192.0.2.4\r\n", ""),
    "short o": OFFER.replace("IN IP4 192.0.2.4\r\ns", "IN\r\ns"),
    "no s": OFFER.replace("s=-\r\n", ""),
    "not a line": OFFER + "hello world\r\n",
    "bad c": OFFER.replace("c=IN IP4 192.0.2.4", "c=IN XX 192.0.2.4"),
    "no c": OFFER.replace("c=IN IP4 192.0.2.4\r\n", ""),
    "bad port": OFFER.replace("49170", "99999"),
    "bad pt": OFFER.replace("96 8 0 101", "96 8 0 300"),
    "short m": OFFER.replace("m=audio 49170 RTP/AVP 96 8 0 101", "m=audio 49170"),
}


@pytest.mark.parametrize("data", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_rejected_clearly_s1(data: str | bytes) -> None:
    result = parse_sdp(data)
    assert isinstance(result, SdpError)
    assert (result.rule, result.status) == ("S1", 400)
    assert result.reason


@given(st.text(max_size=300))
def test_any_text_parses_or_is_an_sdp_error(text: str) -> None:
    result = parse_sdp("v=0\r\n" + text)
    assert isinstance(result, SessionDescription | SdpError)
    if isinstance(result, SessionDescription):
        assert isinstance(answer_offer(result, OURS, 4000), tuple | SdpError)


def test_our_offer_and_their_answer_agree() -> None:
    offer = make_offer(OURS, 40000)
    assert sdp(str(offer)) == offer
    assert offer.media[0].formats == ("0", "8", "101")
    answer, theirs = answered(str(offer))  # the far end answering with this module
    ours = accept_answer(offer, answer)
    assert ours == Negotiated(PCMU, 101, "198.51.100.7", 40000, "sendrecv")
    assert theirs.codec == ours.codec


def test_a_hold_offer_is_sendonly_and_accepted_as_such() -> None:
    offer = make_offer(Origin("voxline", 42, 2, "198.51.100.7"), 40000, direction="sendonly")
    answer, theirs = answered(str(offer))
    assert theirs.direction == "recvonly"
    ours = accept_answer(offer, answer)
    assert isinstance(ours, Negotiated)
    assert ours.direction == "sendonly"


def test_an_answer_without_our_codecs_is_488() -> None:
    offer = make_offer(OURS, 40000, codecs=(PCMU,))
    answer = sdp(OFFER.replace("96 8 0 101", "8"))
    result = accept_answer(offer, answer)
    assert isinstance(result, SdpError)
    assert result.status == 488


def test_a_session_level_direction_applies_to_the_stream_s4() -> None:
    offer = OFFER.replace("a=sendrecv\r\n", "").replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    assert answered(offer)[1].direction == "recvonly"


def test_telephone_event_at_another_rate_is_not_taken_s3() -> None:
    offer = OFFER.replace("telephone-event/8000", "telephone-event/48000")
    assert answered(offer)[1].dtmf is None


def test_our_answer_asks_for_20ms_whatever_the_offer_asked() -> None:
    answer, agreed = answered(OFFER.replace("a=ptime:20", "a=ptime:30"))
    assert agreed.ptime == 30
    assert answer.media[0].ptime == 20


def test_rtcp_goes_to_the_port_above_rtp_or_the_one_offered_s7() -> None:
    _, agreed = answered(OFFER)
    assert (agreed.rtcp_mux, agreed.rtcp_to) == (False, 49171)
    _, agreed = answered(OFFER + "a=rtcp:53020 IN IP4 192.0.2.4\r\n")
    assert agreed.rtcp_to == 53020
    _, agreed = answered(OFFER + "a=rtcp:nonsense\r\n")
    assert agreed.rtcp_to == 49171


def test_rtcp_mux_offered_is_echoed_and_agreed_s7() -> None:
    answer, agreed = answered(OFFER + "a=rtcp-mux\r\n")
    assert agreed.rtcp_mux
    assert answer.media[0].attribute("rtcp-mux") == [""]
    answer, agreed = answered(OFFER)
    assert not agreed.rtcp_mux
    assert answer.media[0].attribute("rtcp-mux") == []
    offer = make_offer(OURS, 40000)  # ours does not offer it: an answer's is not taken
    taken = accept_answer(offer, sdp(OFFER + "a=rtcp-mux\r\n"))
    assert isinstance(taken, Negotiated)
    assert not taken.rtcp_mux
