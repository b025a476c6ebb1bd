"""Inputs that once crashed a parser, by target (shortened by hand to what matters): seeds of
every run, and run one by one in tests/test_fuzz.py. Each says which module was fixed.

The hostile seeds (bench/fuzz/seeds.py) found more, before any mutation: msgspec's
``RecursionError`` on 10,000-level JSON (transports/native.py, realtime.py,
realtime_transcription.py, twilio.py), ``int()`` on ``²`` and on 5,000 digits that
``str.isdigit`` had let through (transports/sip/message.py, sdp.py), and a YAML key that is a
list, TOML nested 10,000 deep, a 5,000-digit number and a 13th month in an agent file
(agent/config/loading.py).
"""

from __future__ import annotations

import struct

__all__ = ["REGRESSIONS"]


def _wav(tag: int, rate: int) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, 1, rate, 2 * rate, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + 320)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", 320) + bytes(320))
    )


_OFFER = (
    b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    b"c=IN. IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=ice-ufrag:abcd\r\n"
    b"a=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:sha-256 AB:CD\r\n"
)

REGRESSIONS: dict[str, tuple[bytes, ...]] = {
    # aiortc's SDP parser asserts on a c= line it cannot read (transports/webrtc.py)
    "webrtc_offer": (_OFFER,),
    # the envelope decoded, the whole message then did not: invalid UTF-8 in a field the
    # envelope skips (transports/realtime_transcription.py)
    "realtime_transcription": (
        b'{"type":"transcription_session.update","session":{"x":"\xff"}}',
        b'{"type":"session.update","session":{"type":"transcription","x":"\xc3"}}',
    ),
    # an event whose type is an object: the check for overrides looked it up in a set
    # (agent/realtime_overrides.py)
    "realtime_locked": (b'{"type": {"output_modalities": ["text"]}}',),
    # a WAV codec FFmpeg has no decoder for (no codec context), and a WAV claiming 16.7 MHz:
    # a resampler from there took 10 s and 1.6 GB (pipeline/media.py)
    "decode_audio": (_wav(0x0100, 16000), _wav(1, 0xFFC080)),
}
