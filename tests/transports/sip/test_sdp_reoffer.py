"""Re-offers answered by :class:`transports.sip.reoffer.MediaSession` (rules R1-R6)."""

from __future__ import annotations

from transports.sip.reoffer import MediaSession, Reanswer
from transports.sip.sdp import (
    PCMA,
    PCMU,
    Origin,
    SdpError,
    SessionDescription,
    answer_offer,
    make_offer,
    parse_sdp,
)

PORT = 40000


def offer(
    formats: str = "0 8 101",
    direction: str = "sendrecv",
    address: str = "192.0.2.10",
    port: int = 5004,
    version: int = 1,
) -> bytes:
    lines = [
        "v=0",
        f"o=phone 42 {version} IN IP4 192.0.2.10",
        "s=-",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        f"a={direction}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def described(data: bytes) -> SessionDescription:
    description = parse_sdp(data)
    assert isinstance(description, SessionDescription), description
    return description


def answered_call() -> MediaSession:
    """A call answered as :class:`agent.sip_call.Answering` does: PCMU, sendrecv."""
    result = answer_offer(described(offer()), Origin("-", 7, 0, "198.51.100.1"), PORT)
    assert not isinstance(result, SdpError)
    answer, negotiated = result
    return MediaSession(answer, PORT, negotiated)


def reanswer(media: MediaSession, body: bytes) -> Reanswer:
    result = media.reoffer(body)
    assert isinstance(result, Reanswer), result
    return result


def test_r1_a_reinvite_without_a_body_gets_our_last_sdp_unchanged() -> None:
    media = answered_call()
    before = bytes(media.sent)
    result = reanswer(media, b"")
    assert result.sdp == before
    assert not result.changed


def test_r2_a_body_that_is_not_sdp_is_refused_and_nothing_changes() -> None:
    media = answered_call()
    before, negotiated = media.sent, media.negotiated
    result = media.reoffer(b"hello")
    assert isinstance(result, SdpError)
    assert result.status == 400
    assert (media.sent, media.negotiated) == (before, negotiated)


def test_r3_no_codec_in_common_is_488_and_the_call_goes_on_as_it_was() -> None:
    media = answered_call()
    before, negotiated = media.sent, media.negotiated
    result = media.reoffer(offer("9"))  # G.722 only
    assert isinstance(result, SdpError)
    assert result.status == 488
    assert (media.sent, media.negotiated) == (before, negotiated)


def test_r3_pcma_on_a_dynamic_payload_type_is_488() -> None:
    media = answered_call()
    body = offer("96").replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:96 PCMA/8000")
    result = media.reoffer(body)
    assert isinstance(result, SdpError)
    assert result.status == 488


def test_r4_a_refresh_with_the_same_offer_keeps_our_sdp_and_its_version() -> None:
    media = answered_call()
    before = bytes(media.sent)
    result = reanswer(media, offer(version=2))  # the offerer may bump its own
    assert result.sdp == before
    assert not result.changed
    assert described(result.sdp).origin.version == 0


def test_r4_only_the_far_ends_address_changed_is_applied_with_our_version_unchanged() -> None:
    media = answered_call()
    result = reanswer(media, offer(address="192.0.2.99", port=6000, version=2))
    assert result.changed
    assert (result.negotiated.address, result.negotiated.port) == ("192.0.2.99", 6000)
    assert described(result.sdp).origin.version == 0


def test_r5_hold_by_sendonly_is_answered_recvonly_and_unhold_resumes() -> None:
    media = answered_call()
    held = reanswer(media, offer(direction="sendonly", version=2))
    assert held.changed
    assert held.negotiated.direction == "recvonly"
    assert media.held
    answer = described(held.sdp)
    assert answer.media[0].direction == "recvonly"
    assert answer.origin.version == 1
    assert (answer.origin.session_id, answer.media[0].port) == (7, PORT)
    resumed = reanswer(media, offer(version=3))
    assert resumed.negotiated.direction == "sendrecv"
    assert media.negotiated.sending  # not held
    assert described(resumed.sdp).origin.version == 2


def test_r5_hold_by_inactive_is_answered_inactive() -> None:
    media = answered_call()
    held = reanswer(media, offer(direction="inactive"))
    assert described(held.sdp).media[0].direction == "inactive"
    assert media.held


def test_r6_old_style_hold_keeps_where_rtp_goes() -> None:
    media = answered_call()
    held = reanswer(media, offer(address="0.0.0.0"))
    assert media.held
    assert described(held.sdp).media[0].direction == "recvonly"
    assert (held.negotiated.address, held.negotiated.port) == ("192.0.2.10", 5004)
    resumed = reanswer(media, offer(address="192.0.2.10"))
    assert media.negotiated.sending  # not held
    assert resumed.changed


def test_r5_a_codec_change_to_pcma_is_answered_with_pcma() -> None:
    media = answered_call()
    assert media.negotiated.codec == PCMU
    result = reanswer(media, offer("8 101"))
    assert result.changed
    assert result.negotiated.codec == PCMA
    assert result.negotiated.dtmf == 101
    answer = described(result.sdp)
    assert answer.media[0].formats == ("8", "101")
    assert answer.origin.version == 1


def test_an_outbound_calls_session_starts_from_our_offer() -> None:
    origin = Origin("-", 9, 0, "198.51.100.1")
    sent = make_offer(origin, PORT)
    result = answer_offer(described(offer()), origin, PORT)
    assert not isinstance(result, SdpError)
    media = MediaSession(sent, PORT, result[1])
    assert reanswer(media, b"").sdp == bytes(sent)  # R1: the offer again
    held = reanswer(media, offer(direction="sendonly"))
    assert described(held.sdp).origin.version == 1
    assert described(held.sdp).media[0].formats == ("0", "101")
