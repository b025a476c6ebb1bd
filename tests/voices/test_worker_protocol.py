"""The worker pipe protocol: framing and the tagged messages."""

from __future__ import annotations

import io

import pytest

from voices.engine import Prosody, SpeechChunk, SpeechSegment, WordTiming
from voices.worker_protocol import (
    MAX_MESSAGE_BYTES,
    Cancel,
    Chunk,
    Done,
    Ready,
    Synthesize,
    encode,
    read_reply,
    read_request,
)


def test_requests_and_replies_survive_the_pipe() -> None:
    requests: list[Synthesize | Cancel] = [
        Synthesize(1, (SpeechSegment("Hi.", Prosody(length_scale=1.2), pause_ms=100),)),
        Cancel(1),
    ]
    replies: list[Ready | Chunk | Done] = [
        Ready(22050, "en_US-joe-medium", "phonemes"),
        Chunk(1, SpeechChunk(22050, b"\x00\x01" * 4, 0, 0, 3, (WordTiming(0, 3, 0, 4),))),
        Done(1, 1, stopped=True),
    ]
    request_pipe = io.BytesIO(b"".join(encode(m) for m in requests))
    reply_pipe = io.BytesIO(b"".join(encode(m) for m in replies))
    assert [read_request(request_pipe) for _ in requests] == requests
    assert read_request(request_pipe) is None
    assert [read_reply(reply_pipe) for _ in replies] == replies
    assert read_reply(reply_pipe) is None


def test_a_cut_or_oversized_message_is_an_error() -> None:
    frame = encode(Cancel(7))
    with pytest.raises(EOFError):
        read_request(io.BytesIO(frame[:2]))
    with pytest.raises(EOFError):
        read_request(io.BytesIO(frame[:-1]))
    with pytest.raises(ValueError, match="limit"):
        read_request(io.BytesIO((MAX_MESSAGE_BYTES + 1).to_bytes(4, "big")))
