"""Twilio Media Streams: the messages Twilio sends, what goes back, and marks as heard time."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import anyio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.session_events import MarkReached
from agent.twilio_call import TwilioSink
from pipeline.events import AudioFrame
from transports.g711 import pcm16_to_ulaw
from transports.twilio import (
    Connected,
    Dtmf,
    PeerError,
    Played,
    StreamStarted,
    StreamStopped,
    TwilioProtocol,
    TwilioState,
)

STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC123",
        "streamSid": STREAM,
        "callSid": "CA123",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"agent": "receptionist"},
    },
    "streamSid": STREAM,
}


def tone(seconds: float, rate: int) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2").tobytes()


def media(payload: bytes, timestamp: int, chunk: int = 1) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(chunk + 2),
            "media": {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str(timestamp),
                "payload": base64.b64encode(payload).decode(),
            },
            "streamSid": STREAM,
        }
    )


def mark(name: str) -> str:
    return json.dumps(
        {"event": "mark", "sequenceNumber": "9", "streamSid": STREAM, "mark": {"name": name}}
    )


def started() -> TwilioProtocol:
    protocol = TwilioProtocol()
    protocol.receive_text(json.dumps(CONNECTED))
    protocol.receive_text(json.dumps(START))
    return protocol


def sent(protocol: TwilioProtocol) -> list[dict[str, Any]]:
    return [json.loads(m) for m in protocol.data_to_send()]


def test_connected_and_start_describe_the_call() -> None:
    protocol = TwilioProtocol()
    assert protocol.receive_text(json.dumps(CONNECTED)) == [Connected("Call", "1.0.0")]
    assert protocol.receive_text(json.dumps(START)) == [
        StreamStarted(STREAM, "CA123", "AC123", ("inbound",), {"agent": "receptionist"})
    ]
    assert protocol.state is TwilioState.STREAMING
    assert protocol.stream_sid == STREAM
    assert sent(protocol) == []


def test_caller_audio_becomes_16_khz_on_a_continuous_timeline() -> None:
    protocol = started()
    speech = pcm16_to_ulaw(tone(1.0, 8000))
    chunks: list[AudioFrame] = []
    for n in range(50):
        events = protocol.receive_text(media(speech[n * 160 : (n + 1) * 160], 20 * n, n + 1))
        chunks += [e for e in events if isinstance(e, AudioFrame)]
    events = protocol.receive_text(json.dumps({"event": "stop", "streamSid": STREAM, "stop": {}}))
    assert events[-1] == StreamStopped()
    chunks += [e for e in events if isinstance(e, AudioFrame)]
    assert sum(c.num_samples for c in chunks) == 16000
    assert all(b.pts == a.end_pts for a, b in itertools.pairwise(chunks))
    assert protocol.gaps_filled_ms == 0
    assert protocol.receive_text(media(speech[:160], 1000)) == []  # after stop: nothing


def test_lost_media_is_filled_with_silence_but_jitter_is_not() -> None:
    protocol = started()
    frame = pcm16_to_ulaw(tone(0.02, 8000))
    protocol.receive_text(media(frame, 0))
    protocol.receive_text(media(frame, 25))  # 5 ms late: jitter
    assert protocol.gaps_filled_ms == 0
    protocol.receive_text(media(frame, 240))  # 200 ms missing
    assert protocol.gaps_filled_ms == 200
    protocol.receive_text(media(frame, 60_000))  # a minute missing: capped
    assert protocol.gaps_filled_ms == 1200


def test_bot_audio_goes_out_in_20_ms_frames_with_marks() -> None:
    protocol = started()
    protocol.send_audio(5, tone(1.0, 22050), 22050)
    protocol.end_audio(5)
    messages = sent(protocol)
    frames = [base64.b64decode(m["media"]["payload"]) for m in messages if m["event"] == "media"]
    marks = [m["mark"]["name"] for m in messages if m["event"] == "mark"]
    assert all(m["streamSid"] == STREAM for m in messages)
    assert sum(len(f) for f in frames) == 8000  # one second of μ-law at 8 kHz
    assert {len(f) for f in frames[:-1]} == {160}
    assert len(marks) == 6  # every 200 ms, and the last sample
    assert messages[-1]["event"] == "mark"
    played = [e for name in marks for e in protocol.receive_text(mark(name))]
    assert all(isinstance(e, Played) and e.generation == 5 for e in played)
    positions = [e.samples for e in played if isinstance(e, Played)]
    assert positions == sorted(positions)
    assert positions[-1] == 22050
    assert [e.finished for e in played if isinstance(e, Played)] == [False] * 5 + [True]
    assert protocol.heard(5) == 22050


def test_barge_in_clears_twilio_and_keeps_only_what_was_acknowledged() -> None:
    protocol = started()
    protocol.send_audio(6, tone(1.0, 16000), 16000)
    marks = [m["mark"]["name"] for m in sent(protocol) if m["event"] == "mark"]
    [first] = protocol.receive_text(mark(marks[0]))
    assert first == Played(6, 3200, False)  # 200 ms at the 16 kHz it was sent at
    assert protocol.interrupt(6) == 3200
    assert sent(protocol) == [{"event": "clear", "streamSid": STREAM}]
    # Twilio echoes the marks it dropped: they say nothing about playback
    for name in marks[1:]:
        assert protocol.receive_text(mark(name)) == []
    assert protocol.heard(6) == 3200
    protocol.send_audio(6, tone(0.5, 16000), 16000)  # late audio of the cut reply
    protocol.end_audio(6)
    assert sent(protocol) == []


def test_interrupting_a_finished_reply_sends_nothing() -> None:
    protocol = started()
    protocol.send_audio(1, tone(0.1, 8000), 8000)
    protocol.end_audio(1)
    for message in sent(protocol):
        if message["event"] == "mark":
            protocol.receive_text(mark(message["mark"]["name"]))
    assert protocol.interrupt(1) == 800
    assert sent(protocol) == []


def test_a_new_generation_ends_the_previous_one() -> None:
    protocol = started()
    protocol.send_audio(1, tone(0.1, 8000), 8000)
    protocol.send_audio(2, tone(0.1, 8000), 8000)
    names = [m["mark"]["name"] for m in sent(protocol) if m["event"] == "mark"]
    played = [e for name in names for e in protocol.receive_text(mark(name))]
    assert [(e.generation, e.finished) for e in played if isinstance(e, Played)] == [(1, True)]


def test_dtmf_is_reported() -> None:
    protocol = started()
    message = {
        "event": "dtmf",
        "streamSid": STREAM,
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": "7"},
    }
    assert protocol.receive_text(json.dumps(message)) == [Dtmf("7")]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("nope", "bad_json"),
        ("[]", "bad_message"),
        ('{"event": "dance"}', "unknown_event"),
        ('{"streamSid": "x"}', "unknown_event"),
        ('{"event": "media", "media": {"payload": "***"}}', "bad_audio"),
        ('{"event": "media"}', "bad_message"),
        ('{"event": "mark", "mark": {"name": "someone-else"}}', "unknown_mark"),
        (json.dumps(START), "start_repeated"),
    ],
)
def test_bad_messages_are_reported_and_ignored(text: str, code: str) -> None:
    protocol = started()
    [event] = protocol.receive_text(text)
    assert isinstance(event, PeerError)
    assert event.code == code
    assert sent(protocol) == []  # Twilio has no error message
    assert protocol.state is TwilioState.STREAMING


def test_media_before_start_is_refused() -> None:
    protocol = TwilioProtocol()
    [event] = protocol.receive_text(media(b"\xff" * 160, 0))
    assert event == PeerError("not_started", "a message before the start message")
    with pytest.raises(RuntimeError, match="start"):
        protocol.send_audio(1, b"\x00\x00", 8000)


def test_a_binary_frame_is_reported() -> None:
    assert TwilioProtocol().receive_bytes(b"\x00") == [
        PeerError("unexpected_binary", "a binary frame of 1 bytes")
    ]


def test_an_unexpected_media_format_is_reported_and_decoded_as_mulaw() -> None:
    start = json.loads(json.dumps(START))
    start["start"]["mediaFormat"] = {"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}
    events = TwilioProtocol().receive_text(json.dumps(start))
    assert isinstance(events[0], PeerError)
    assert events[0].code == "unsupported_format"
    assert isinstance(events[1], StreamStarted)


def test_outbound_tracks_are_ignored() -> None:
    protocol = started()
    message = json.loads(media(b"\xff" * 160, 0))
    message["media"]["track"] = "outbound"
    assert protocol.receive_text(json.dumps(message)) == []


@pytest.mark.anyio
async def test_the_sink_streams_media_and_has_no_one_to_tell_of_an_ssml_mark() -> None:
    protocol = started()
    send, receive = anyio.create_memory_object_stream[str | bytes](1000)
    with send, receive, anyio.fail_after(10):
        sink = TwilioSink(protocol, send)
        await sink.send_event(MarkReached(1, "code", 0.0))
        assert receive.statistics().current_buffer_used == 0
        await sink.send_audio(1, tone(0.1, 8000))
        await sink.send_event(MarkReached(1, "code", 50.0))
        await sink.end_audio(1)
        send.close()
        messages = [json.loads(m) async for m in receive]
    assert {m["event"] for m in messages} == {"media", "mark"}
    assert "code" not in [m["mark"]["name"] for m in messages if m["event"] == "mark"]
    assert protocol.data_to_send() == []  # each call flushed what it queued


TWILIO_ISH = st.fixed_dictionaries(
    {"event": st.sampled_from(["connected", "start", "media", "mark", "stop", "dtmf", "x"])},
    optional={
        "start": st.dictionaries(
            st.sampled_from(["streamSid", "tracks", "mediaFormat"]),
            st.text(max_size=4) | st.integers(),
        ),
        "media": st.fixed_dictionaries(
            {
                "payload": st.text(max_size=12)
                | st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
            },
            optional={
                "timestamp": st.text(max_size=4) | st.integers(-10, 10**9),
                "track": st.text(max_size=8),
            },
        ),
        "mark": st.fixed_dictionaries({"name": st.text(max_size=6)}),
        "dtmf": st.dictionaries(st.just("digit"), st.text(max_size=2) | st.integers()),
    },
).map(json.dumps)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=100), TWILIO_ISH), max_size=15))
def test_peer_input_never_raises(inputs: list[str]) -> None:
    protocol = TwilioProtocol()
    for text in inputs:
        protocol.receive_text(text)
        if protocol.stream_sid is not None:
            protocol.send_audio(1, b"\x00\x00" * 400, 8000)
        assert protocol.data_to_send() is not None
