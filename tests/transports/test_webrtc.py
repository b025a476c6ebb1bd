"""WebRTC, sans-I/O: offers checked in words, audio into 16 kHz, reply audio into frames."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ProtocolError
from transports.webrtc import (
    JITTER_S,
    InboundFrames,
    OfferSummary,
    OutboundFrames,
    check_offer,
    data_channel_protocol,
    parse_offer,
)

#: an offer Chromium 156 made here: microphone track and an "events" data channel
CHROMIUM_OFFER = """v=0
o=- 2639178826202639902 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS 37fb3051-910a-4d7a-9d21-61f8b5ef566e
m=audio 43004 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 192.0.2.2
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1801805766 1 udp 2122194687 192.0.2.2 43004 typ host generation 0 network-id 1
a=candidate:1813459830 1 udp 2122265343 fd00::2 56599 typ host generation 0 network-id 2
a=ice-ufrag:9ExJ
a=ice-pwd:/fDLUEbMj/obLBLX1SVREOYy
a=ice-options:trickle
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:actpass
a=mid:0
a=sendrecv
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:126 telephone-event/8000
m=application 33416 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 192.0.2.2
a=candidate:1801805766 1 udp 2122194687 192.0.2.2 33416 typ host generation 0 network-id 1
a=ice-ufrag:9ExJ
a=ice-pwd:/fDLUEbMj/obLBLX1SVREOYy
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:actpass
a=mid:1
a=sctp-port:5000
"""
FINGERPRINT = ":".join(["EF:40:38:81:78:9A:B3:1A:2E:D2:5C:5C:FC:84:F1:34"] * 2)
CHROMIUM_OFFER = CHROMIUM_OFFER.replace("{FINGERPRINT}", FINGERPRINT).replace("\n", "\r\n")


def edited(old: str, new: str) -> str:
    assert old in CHROMIUM_OFFER
    return CHROMIUM_OFFER.replace(old, new)


# -- offers -------------------------------------------------------------------------------------


def test_a_browser_offer_is_accepted() -> None:
    assert check_offer(CHROMIUM_OFFER) == OfferSummary("sendrecv", data_channel=True, candidates=3)


@pytest.mark.parametrize(
    ("sdp", "direction", "data_channel"),
    [
        (edited("a=sendrecv", "a=recvonly"), "recvonly", True),
        (edited("a=sendrecv", "a=sendonly"), "sendonly", True),
        (edited("a=sendrecv\r\n", ""), "sendrecv", True),
        (edited("a=sendrecv\r\n", "").replace("s=-", "s=-\r\na=inactive"), "inactive", True),
        (CHROMIUM_OFFER.split("m=application")[0], "sendrecv", False),
    ],
)
def test_the_audio_direction_and_the_data_channel_are_read(
    sdp: str, direction: str, data_channel: bool
) -> None:
    summary = check_offer(sdp)
    assert (summary.direction, summary.data_channel) == (direction, data_channel)
    assert summary.caller_sends == (direction in ("sendrecv", "sendonly"))


@pytest.mark.parametrize(
    ("sdp", "reason"),
    [
        ("", "not SDP"),
        ("hello", "not SDP"),
        (
            edited("m=audio 43004 UDP/TLS/RTP/SAVPF", "m=video 43004 UDP/TLS/RTP/SAVPF"),
            "audio only",
        ),
        (CHROMIUM_OFFER.split("m=audio")[0], "exactly one audio section, it has 0"),
        (
            CHROMIUM_OFFER + CHROMIUM_OFFER.split("m=application")[0].split("t=0 0\r\n")[1],
            "exactly one audio section, it has 2",
        ),
        (edited("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 G722/8000"), "no Opus"),
        (edited("m=audio 43004 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=audio"), "bad media"),
        (CHROMIUM_OFFER.replace("a=ice-ufrag:9ExJ\r\n", ""), "no ice-ufrag"),
        (CHROMIUM_OFFER.replace("a=ice-pwd:/fDLUEbMj/obLBLX1SVREOYy\r\n", ""), "no ice-pwd"),
        (CHROMIUM_OFFER.replace("a=fingerprint:", "a=x-fingerprint:"), "no fingerprint"),
    ],
)
def test_an_offer_voxline_cannot_answer_is_refused_in_words(sdp: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        check_offer(sdp)


def test_an_offer_comes_as_json_or_as_sdp() -> None:
    body = json.dumps({"type": "offer", "sdp": CHROMIUM_OFFER, "agent": "a", "voice": "v"})
    offer = parse_offer("application/json; charset=utf-8", body.encode())
    assert (offer.sdp, offer.agent, offer.voice, offer.whip) == (CHROMIUM_OFFER, "a", "v", False)
    whip = parse_offer("application/sdp", CHROMIUM_OFFER.encode())
    assert (whip.sdp, whip.agent, whip.whip) == (CHROMIUM_OFFER, None, True)
    assert whip.summary == offer.summary


def test_a_room_comes_in_the_json_or_in_a_whip_offers_query() -> None:
    body = json.dumps({"type": "offer", "sdp": CHROMIUM_OFFER, "room": "r1", "language": "es"})
    offer = parse_offer("application/json", body.encode(), {"room": "ignored"})
    assert (offer.room, offer.language) == ("r1", "es")
    whip = parse_offer("application/sdp", CHROMIUM_OFFER.encode(), {"room": "r2", "language": "en"})
    assert (whip.room, whip.language) == ("r2", "en")
    alone = parse_offer("application/sdp", CHROMIUM_OFFER.encode())
    assert (alone.room, alone.language) == (None, None)
    with pytest.raises(ProtocolError, match="for a room only"):
        parse_offer("application/sdp", CHROMIUM_OFFER.encode(), {"language": "en"})


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("text/plain", CHROMIUM_OFFER.encode(), "application/json or application/sdp"),
        ("", CHROMIUM_OFFER.encode(), "application/json or application/sdp"),
        ("application/json", b"{not json", "not valid JSON"),
        ("application/json", b'{"type": "answer", "sdp": "v=0"}', "bad offer"),
        ("application/json", b'{"type": "offer"}', "missing required field `sdp`"),
        ("application/json", b'{"type": "offer", "sdp": "v=0", "x": 1}', "unknown field `x`"),
        ("application/sdp", b"\xff\xfe", "not UTF-8"),
        ("application/sdp", b"v=0\r\n" + b"a=x\r\n" * 20000, "larger than"),
    ],
)
def test_a_bad_offer_body_is_refused_in_words(content_type: str, body: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_offer(content_type, body)


# -- audio in -----------------------------------------------------------------------------------


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2")


def test_stereo_opus_audio_becomes_16khz_mono() -> None:
    left = tone(1.0, 48000)
    stereo = np.stack([left, left // 2], axis=1).reshape(-1).tobytes()
    frames = InboundFrames()
    out = b""
    for offset in range(0, len(stereo), 960 * 4):  # 20 ms frames, as the decoder gives them
        chunk = frames.convert(stereo[offset : offset + 960 * 4], 2, 48000)
        if chunk is not None:
            assert chunk.pts == len(out) // 2
            out += chunk.pcm
    samples = np.frombuffer(out, dtype="<i2")
    assert 15000 < len(samples) <= 16000  # the resampler holds a few ms back
    expected = np.sqrt(np.mean((left.astype(float) * 0.75) ** 2))
    assert np.sqrt(np.mean(samples[2000:].astype(float) ** 2)) == pytest.approx(expected, rel=0.02)


def test_a_rate_change_keeps_one_timeline() -> None:
    frames = InboundFrames()
    first = frames.convert(tone(0.5, 48000).tobytes(), 1, 48000)
    second = frames.convert(tone(0.5, 16000).tobytes(), 1, 16000)
    assert first is not None
    assert second is not None
    assert second.pts == first.end_pts
    assert second.end_pts == pytest.approx(16000, abs=32)  # 0.5 s + 0.5 s at 16 kHz


def test_partial_channel_frames_are_our_error() -> None:
    with pytest.raises(ValueError, match="whole frames"):
        InboundFrames().convert(b"\x00" * 6, 2, 48000)


# -- audio out ----------------------------------------------------------------------------------


def test_reply_audio_is_cut_into_20ms_frames_with_silence_between() -> None:
    frames = OutboundFrames(48000)
    assert frames.frame_samples == 960
    audio = tone(0.05, 48000).tobytes()  # 2.5 frames
    frames.push(1, audio)
    got = [frames.next_frame() for _ in range(4)]
    assert [generation for _, generation in got] == [1, 1, 1, None]
    assert b"".join(pcm for pcm, _ in got[:3])[: len(audio)] == audio
    assert got[2][0][480 * 2 :] == bytes(480 * 2)  # the end padded with silence
    assert got[3][0] == bytes(960 * 2)
    assert frames.statistics().silent_frames == 1


def test_a_frame_never_mixes_two_generations() -> None:
    frames = OutboundFrames(48000)
    frames.push(1, tone(0.01, 48000).tobytes())
    frames.push(2, tone(0.02, 48000).tobytes())
    assert [frames.next_frame()[1] for _ in range(3)] == [1, 2, None]


def test_barge_in_silences_the_next_frame_and_refuses_late_audio() -> None:
    frames = OutboundFrames(48000)
    frames.push(1, tone(0.1, 48000).tobytes())
    assert frames.next_frame()[1] == 1
    assert frames.clear(1) == 4800 - 960
    assert frames.next_frame() == (bytes(960 * 2), None)
    frames.push(1, tone(0.1, 48000).tobytes())  # in flight when the barge-in came
    frames.push(2, tone(0.02, 48000).tobytes())
    assert frames.next_frame()[1] == 2
    assert frames.statistics().cleared_samples == 4800 - 960


def test_what_each_reply_sent_is_counted_without_the_padding() -> None:
    frames = OutboundFrames(48000, remembered=2)
    frames.push(1, tone(0.03, 48000).tobytes())  # a frame and a half
    frames.push(2, tone(0.02, 48000).tobytes())
    assert [frames.next_frame()[1] for _ in range(4)] == [1, 1, 2, None]
    assert (frames.sent_samples(1), frames.sent_samples(2)) == (1440, 960)
    frames.push(3, tone(0.02, 48000).tobytes())
    frames.next_frame()
    assert (frames.sent_samples(1), frames.sent_samples(3)) == (0, 960)  # the oldest forgotten


def test_the_jitter_queue_holds_a_fraction_of_a_second() -> None:
    frames = OutboundFrames(48000)
    frames.push(1, tone(1.0, 48000).tobytes())
    assert frames.buffered_samples == round(JITTER_S * 48000)


def test_clearing_everything_keeps_no_audio() -> None:
    frames = OutboundFrames(48000)
    frames.push(1, tone(0.1, 48000).tobytes())
    frames.push(2, tone(0.1, 48000).tobytes())
    assert frames.clear() == 9600
    assert frames.buffered_samples == 0
    frames.push(1, tone(0.02, 48000).tobytes())  # clear() refuses no generation
    assert frames.next_frame()[1] == 1


def test_audio_nobody_pulls_is_bounded_by_dropping_the_oldest() -> None:
    frames = OutboundFrames(48000, max_seconds=0.1)
    audio = tone(0.3, 48000)
    for offset in range(0, len(audio), 1000):
        frames.push(1, audio[offset : offset + 1000].tobytes())
    assert frames.buffered_samples == 4800
    assert frames.statistics().overflow_samples == len(audio) - 4800
    assert frames.next_frame()[0] == audio[-4800:][:960].tobytes()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=20))
def test_frames_do_not_depend_on_how_the_audio_was_written(cuts: list[int]) -> None:
    audio = tone(0.2, 48000).tobytes()
    whole = OutboundFrames(48000)
    whole.push(1, audio)
    pieces = OutboundFrames(48000)
    offset = 0
    for cut in cuts:
        pieces.push(1, audio[offset : offset + cut * 2])
        offset += cut * 2
    pieces.push(1, audio[offset:])
    assert [whole.next_frame() for _ in range(12)] == [pieces.next_frame() for _ in range(12)]


# -- the data channel ---------------------------------------------------------------------------


def test_the_data_channel_speaks_the_native_protocol_at_the_track_rate() -> None:
    protocol = data_channel_protocol("s1")
    (started,) = protocol.data_to_send()
    assert isinstance(started, str)
    assert json.loads(started) == {
        "type": "session.started",
        "session_id": "s1",
        "version": 1,
        "sample_rate": 48000,
        "encoding": "pcm16",
    }
    protocol.send_audio(1, tone(0.02, 48000).tobytes(), 48000)
    start, audio = protocol.data_to_send()
    assert isinstance(start, str)
    assert isinstance(audio, bytes)
    assert msgspec.json.decode(start)["type"] == "audio.start"
    assert len(audio) == 960 * 2  # the same rate: no resampling, no lag
