"""The native /v1/stream protocol: handshake, audio both ways, events, and bad input; and what
its adapter (:class:`~agent.native_call.NativeSink`) makes of the session's events."""

from __future__ import annotations

import json
from typing import Any

import anyio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.native_call import NativeSink
from agent.session_events import Interrupted, MarkReached, Notice, UserTurn
from pipeline.events import PIPELINE_RATE, AudioFrame
from transports.audio import AudioFormat
from transports.g711 import pcm16_to_ulaw
from transports.native import (
    Bye,
    CommitRequest,
    Hello,
    InterruptRequest,
    NativeProtocol,
    NativeState,
    PeerError,
    Playback,
    UserText,
)


def tone(seconds: float, rate: int) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2").tobytes()


def caller(pcm: bytes, pts: int) -> AudioFrame:
    """Caller audio as the protocol hands it over (16 kHz; no session id: see transports.audio)."""
    return AudioFrame(session_id="", sample_rate=PIPELINE_RATE, pcm=pcm, pts=pts)


def sent(protocol: NativeProtocol) -> list[Any]:
    """What the protocol queued: JSON events as dicts, binary frames as bytes."""
    return [m if isinstance(m, bytes) else json.loads(m) for m in protocol.data_to_send()]


def opened(sample_rate: int = 16000, encoding: str = "pcm16") -> NativeProtocol:
    protocol = NativeProtocol("s1")
    hello = {"type": "hello", "sample_rate": sample_rate, "encoding": encoding}
    protocol.receive_text(json.dumps(hello))
    protocol.data_to_send()
    return protocol


# -- handshake --------------------------------------------------------------------------------


def test_hello_starts_the_session() -> None:
    protocol = NativeProtocol("s1")
    events = protocol.receive_text('{"type": "hello", "sample_rate": 24000}')
    assert events == [Hello(AudioFormat("pcm16", 24000))]
    assert protocol.state is NativeState.OPEN
    assert sent(protocol) == [
        {
            "type": "session.started",
            "session_id": "s1",
            "version": 1,
            "sample_rate": 24000,
            "encoding": "pcm16",
        }
    ]


@pytest.mark.parametrize(
    ("hello", "code"),
    [
        ({"type": "hello", "sample_rate": 7999}, "bad_hello"),
        ({"type": "hello", "sample_rate": 96000}, "bad_hello"),
        ({"type": "hello", "sample_rate": 16000, "encoding": "mulaw"}, "bad_hello"),
        ({"type": "hello", "sample_rate": 16000, "encoding": "opus"}, "bad_message"),
        ({"type": "hello", "sample_rate": 16000, "version": 2}, "bad_hello"),
        ({"type": "hello"}, "bad_message"),
        ({"type": "hello", "sample_rate": "fast"}, "bad_message"),
    ],
)
def test_a_bad_hello_is_answered_and_the_client_may_try_again(
    hello: dict[str, Any], code: str
) -> None:
    protocol = NativeProtocol("s1")
    [event] = protocol.receive_text(json.dumps(hello))
    assert isinstance(event, PeerError)
    assert event.code == code
    [error] = sent(protocol)
    assert error["type"] == "error"
    assert error["code"] == code
    assert protocol.state is NativeState.AWAITING_HELLO
    assert protocol.receive_text('{"type": "hello", "sample_rate": 8000, "encoding": "mulaw"}') == [
        Hello(AudioFormat("mulaw", 8000))
    ]


def test_nothing_but_hello_is_accepted_first() -> None:
    protocol = NativeProtocol("s1")
    assert protocol.receive_bytes(b"\x00\x00") == [
        PeerError("hello_required", "send a hello message before audio")
    ]
    assert protocol.receive_text('{"type": "text", "text": "hi"}')[0] == PeerError(
        "hello_required", "send a hello message first"
    )
    assert [e["code"] for e in sent(protocol)] == ["hello_required", "hello_required"]


def test_a_second_hello_is_refused() -> None:
    protocol = opened()
    [event] = protocol.receive_text('{"type": "hello", "sample_rate": 8000}')
    assert event == PeerError("hello_repeated", "the session has already started")
    assert protocol.format == AudioFormat("pcm16", 16000)


# -- inbound ----------------------------------------------------------------------------------


def test_16_khz_audio_comes_through_as_sent() -> None:
    protocol = opened()
    pcm = tone(0.02, 16000)
    assert protocol.receive_bytes(pcm) == [caller(pcm, 0)]
    assert protocol.receive_bytes(pcm) == [caller(pcm, 320)]
    assert sent(protocol) == []


def test_mulaw_audio_is_decoded_and_resampled_to_16_khz() -> None:
    protocol = opened(8000, "mulaw")
    chunks: list[AudioFrame] = []
    for n in range(50):
        frame = pcm16_to_ulaw(tone(1.0, 8000)[n * 320 : (n + 1) * 320])
        chunks += [e for e in protocol.receive_bytes(frame) if isinstance(e, AudioFrame)]
    total = sum(c.num_samples for c in chunks)
    assert 15_500 < total <= 16_000  # the resampler holds a few ms back until the end
    assert [c.pts for c in chunks] == [
        sum(c.num_samples for c in chunks[:n]) for n in range(len(chunks))
    ]


@pytest.mark.parametrize(
    ("frame", "code"),
    [(b"\x00\x01\x02", "bad_audio"), (bytes(64 * 1024 + 2), "frame_too_large")],
)
def test_bad_audio_frames_are_refused_and_the_call_goes_on(frame: bytes, code: str) -> None:
    protocol = opened()
    [event] = protocol.receive_bytes(frame)
    assert isinstance(event, PeerError)
    assert event.code == code
    assert sent(protocol)[0]["code"] == code
    assert protocol.receive_bytes(b"\x01\x00") == [caller(b"\x01\x00", 0)]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ("null", "bad_json"),
        ('"hello"', "bad_json"),
        ("{}", "unknown_type"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": 5}', "unknown_type"),
        ('{"type": "playback", "generation": "x", "samples": 1}', "bad_message"),
        ('{"type": "playback", "generation": 1, "samples": -1}', "bad_message"),
        ('{"type": "text"}', "bad_message"),
    ],
)
def test_bad_messages_are_answered_with_an_error(text: str, code: str) -> None:
    protocol = opened()
    [event] = protocol.receive_text(text)
    assert isinstance(event, PeerError)
    assert event.code == code
    [error] = sent(protocol)
    assert error == {"type": "error", "code": code, "message": event.message}


def test_an_oversized_text_frame_is_refused() -> None:
    protocol = opened()
    [event] = protocol.receive_text('{"type": "text", "text": "' + "a" * 70_000 + '"}')
    assert isinstance(event, PeerError)
    assert event.code == "text_too_large"


def test_client_messages_become_events() -> None:
    protocol = opened()
    assert protocol.receive_text('{"type": "text", "text": "book a table"}') == [
        UserText("book a table")
    ]
    assert protocol.receive_text('{"type": "interrupt"}') == [InterruptRequest()]
    assert protocol.receive_text('{"type": "commit"}') == [CommitRequest()]
    assert protocol.receive_text('{"type": "bye", "reason": "done"}') == [Bye("done")]
    assert sent(protocol) == [{"type": "session.ended", "reason": "bye"}]
    assert protocol.state is NativeState.CLOSED
    assert protocol.receive_text('{"type": "text", "text": "more"}') == []
    assert protocol.receive_bytes(b"\x00\x00") == []
    protocol.send_transcript(0, "late", final=True)
    assert sent(protocol) == []


# -- outbound ---------------------------------------------------------------------------------


def test_bot_audio_is_framed_by_start_and_end_events() -> None:
    protocol = opened(8000, "pcm16")
    protocol.send_agent_text(3, "Hello")
    protocol.send_audio(3, tone(0.5, 22050), 22050)
    protocol.send_audio(3, tone(0.5, 22050), 22050)
    protocol.end_audio(3)
    messages = sent(protocol)
    assert messages[0] == {"type": "agent.text", "generation": 3, "delta": "Hello"}
    assert messages[1] == {
        "type": "audio.start",
        "generation": 3,
        "sample_rate": 8000,
        "encoding": "pcm16",
    }
    audio = b"".join(m for m in messages if isinstance(m, bytes))
    assert len(audio) == 2 * 8000
    assert messages[-1] == {
        "type": "audio.end",
        "generation": 3,
        "samples": 8000,
        "duration_ms": 1000,
        "interrupted": False,
    }


def test_an_interrupted_generation_is_cut_and_its_late_audio_dropped() -> None:
    protocol = opened()
    protocol.send_audio(4, tone(0.3, 22050), 22050)
    protocol.data_to_send()
    assert protocol.receive_text('{"type": "playback", "generation": 4, "samples": 1600}') == [
        Playback(4, 1600, 2205)
    ]
    protocol.send_interrupted(4, heard_text="Our opening")
    protocol.send_audio(4, tone(0.3, 22050), 22050)
    protocol.send_agent_text(4, " hours are")
    protocol.end_audio(4)
    messages = sent(protocol)
    assert messages[0]["type"] == "audio.end"
    assert messages[0]["interrupted"] is True
    assert messages[1:] == [
        {"type": "interrupted", "generation": 4, "played_ms": 100, "heard_text": "Our opening"}
    ]
    protocol.send_interrupted(4, played_samples=22050)
    assert sent(protocol)[-1]["played_ms"] == 1000


# -- playback reports -------------------------------------------------------------------------


def test_a_playback_report_is_kept_at_the_rate_the_audio_was_sent_at() -> None:
    protocol = opened(8000, "pcm16")
    protocol.send_audio(2, tone(0.5, 22050), 22050)
    assert protocol.played(2) is None  # no report yet: the session's own estimate counts
    assert protocol.receive_text('{"type": "playback", "generation": 2, "samples": 800}') == [
        Playback(2, 800, 2205)
    ]
    assert protocol.receive_text('{"type": "playback", "generation": 2, "samples": 800}') == [
        Playback(2, 800, 2205)  # the same position again is no error
    ]
    protocol.end_audio(2)
    # reports go on after audio.end (the client still plays its buffer)
    protocol.receive_text('{"type": "playback", "generation": 2, "samples": 4000}')
    assert protocol.played(2) == 11025
    assert protocol.played(3) is None


@pytest.mark.parametrize(
    ("message", "code", "says"),
    [
        ({"generation": 7, "samples": 10}, "unknown_generation", "generation 7"),
        ({"generation": 2, "samples": -1}, "bad_message", "negative"),
        ({"generation": 2, "samples": 1601}, "bad_message", "1600 samples so far"),
        ({"generation": 2, "samples": 10**30}, "bad_message", "so far"),
        ({"generation": 2, "samples": 100}, "bad_message", "backwards"),
        ({"generation": 2, "samples": "400"}, "bad_message", "$.samples"),
        ({"generation": 2, "samples": 400.0}, "bad_message", "$.samples"),
        ({"generation": True, "samples": 400}, "bad_message", "$.generation"),
        ({"generation": 2}, "bad_message", "samples"),
    ],
)
def test_a_bad_playback_report_gets_an_error_and_the_last_good_one_stands(
    message: dict[str, Any], code: str, says: str
) -> None:
    protocol = opened()
    protocol.send_audio(2, tone(0.1, 16000), 16000)
    protocol.receive_text('{"type": "playback", "generation": 2, "samples": 400}')
    protocol.data_to_send()
    [event] = protocol.receive_text(json.dumps({"type": "playback", **message}))
    assert isinstance(event, PeerError)
    assert (event.code, says in event.message) == (code, True)
    assert sent(protocol) == [{"type": "error", "code": code, "message": event.message}]
    assert protocol.played(2) == 400
    protocol.send_interrupted(2, heard_text="")
    assert sent(protocol)[-1]["played_ms"] == 25  # the call goes on


def test_one_generation_streams_at_a_time() -> None:
    protocol = opened()
    protocol.send_audio(1, tone(0.1, 16000), 16000)
    with pytest.raises(ValueError, match="still open"):
        protocol.send_audio(2, tone(0.1, 16000), 16000)
    protocol.end_audio(1)
    protocol.send_audio(2, tone(0.1, 16000), 16000)
    protocol.end_audio(99)  # not streaming: nothing to end
    types = [m["type"] for m in sent(protocol) if isinstance(m, dict)]
    assert types == ["audio.start", "audio.end", "audio.start"]


def test_audio_before_hello_is_our_error() -> None:
    with pytest.raises(RuntimeError, match="hello"):
        NativeProtocol("s1").send_audio(1, b"\x00\x00", 16000)


def test_events_for_the_client() -> None:
    protocol = opened()
    protocol.send_speech_started(16000)
    protocol.send_speech_stopped(40000)
    protocol.send_transcript(0, "book a", final=False, stable="book", unstable=" a")
    protocol.send_transcript(0, "Book a table.", final=True)
    protocol.send_latency(5, {"asr_ms": 210.04, "llm_first_token_ms": 250.0})
    protocol.send_error("internal", "something went wrong")
    protocol.close("hang_up")
    protocol.close("again")
    assert sent(protocol) == [
        {"type": "speech.started", "at_ms": 1000},
        {"type": "speech.stopped", "at_ms": 2500},
        {
            "type": "transcript.partial",
            "utterance": 0,
            "text": "book a",
            "stable": "book",
            "unstable": " a",
        },
        {"type": "transcript.final", "utterance": 0, "text": "Book a table."},
        {
            "type": "turn.latency",
            "generation": 5,
            "latency_ms": {"asr_ms": 210.0, "llm_first_token_ms": 250.0},
        },
        {"type": "error", "code": "internal", "message": "something went wrong"},
        {"type": "session.ended", "reason": "hang_up"},
    ]


def test_closing_mid_audio_ends_the_stream_first() -> None:
    protocol = opened()
    protocol.send_audio(2, tone(0.1, 16000), 16000)
    protocol.close("hang_up")
    messages = [m for m in sent(protocol) if isinstance(m, dict)]
    assert [m["type"] for m in messages] == ["audio.start", "audio.end", "session.ended"]
    assert messages[1]["interrupted"] is True


# -- turn decisions and marks ----------------------------------------------------------------


@pytest.mark.parametrize("rule", ["T5", ""])
def test_turn_decisions_name_their_rule_and_leave_it_out_when_there_is_none(rule: str) -> None:
    protocol = opened()
    protocol.send_audio(2, tone(0.1, 16000), 16000)
    protocol.data_to_send()
    protocol.send_turn_ended("Book a table.", 16000, 40000, rule=rule)
    protocol.send_interrupted(2, played_samples=800, heard_text="We", rule=rule)
    protocol.send_error("ignored.echo", "only the bot's echo was heard", rule=rule)
    named = {"rule": rule} if rule else {}
    assert [m for m in sent(protocol) if isinstance(m, dict)] == [
        {"type": "turn.ended", "text": "Book a table.", "start_ms": 1000, "end_ms": 2500, **named},
        {
            "type": "audio.end",
            "generation": 2,
            "samples": 1600,
            "duration_ms": 100,
            "interrupted": True,
        },
        {"type": "interrupted", "generation": 2, "played_ms": 50, "heard_text": "We", **named},
        {
            "type": "error",
            "code": "ignored.echo",
            "message": "only the bot's echo was heard",
            **named,
        },
    ]


def test_a_mark_says_where_playout_reached_it_in_whole_milliseconds() -> None:
    protocol = opened()
    protocol.send_audio(3, tone(0.5, 22050), 22050)
    protocol.data_to_send()
    protocol.send_mark(3, "code", 250.4)
    protocol.send_mark(3, "end", 499.5)
    assert sent(protocol) == [
        {"type": "mark", "generation": 3, "name": "code", "at_ms": 250},
        {"type": "mark", "generation": 3, "name": "end", "at_ms": 500},
    ]


def test_the_marks_of_an_interrupted_generation_are_dropped() -> None:
    protocol = opened()
    protocol.send_audio(3, tone(0.5, 22050), 22050)
    protocol.send_interrupted(3, heard_text="")
    protocol.data_to_send()
    protocol.send_mark(3, "late", 400.0)
    protocol.send_mark(4, "next", 0.0)  # another generation's marks still go out
    assert sent(protocol) == [{"type": "mark", "generation": 4, "name": "next", "at_ms": 0}]


def test_nothing_is_said_after_session_ended() -> None:
    protocol = opened()
    protocol.close("bye")
    protocol.data_to_send()
    protocol.send_mark(1, "code", 10.0)
    protocol.send_turn_ended("Hello.", 0, 16000, rule="T5")
    assert sent(protocol) == []


# -- the adapter: what NativeSink makes of the session's events --------------------------------


@pytest.mark.anyio
async def test_the_native_sink_sends_marks_turn_ends_and_rules() -> None:
    protocol = opened()
    send, receive = anyio.create_memory_object_stream[str | bytes](100)
    with send, receive, anyio.fail_after(10):
        sink = NativeSink(protocol, send)
        await sink.send_audio(2, tone(0.1, 16000))
        await sink.send_event(UserTurn("Book a table.", 16000, 40000, rule="T5"))
        await sink.send_event(MarkReached(2, "code", 50.0))
        await sink.send_event(Interrupted(2, heard_text="We", played_ms=75.0, rule="B1"))
        await sink.send_event(Notice("ignored.backchannel", "yeah", rule="B3"))
        await sink.send_event(Interrupted(5, heard_text="", played_ms=0.0))  # the client asked
        send.close()
        events = [json.loads(m) async for m in receive if isinstance(m, str)]
    assert [(e["type"], e.get("rule")) for e in events] == [
        ("audio.start", None),
        ("turn.ended", "T5"),
        ("mark", None),
        ("audio.end", None),
        ("interrupted", "B1"),
        ("error", "B3"),
        ("interrupted", None),
    ]
    assert events[2] == {"type": "mark", "generation": 2, "name": "code", "at_ms": 50}
    assert events[4]["played_ms"] == 75


# -- fuzzing ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
MESSAGES = st.one_of(
    st.text(max_size=200),
    JSON_VALUES.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["hello", "text", "interrupt", "playback", "bye", "x"])},
        optional={
            "sample_rate": st.integers(-1, 100_000) | st.text(max_size=3),
            "encoding": st.sampled_from(["pcm16", "mulaw", "alaw", "opus"]),
            "text": st.text(max_size=20) | st.integers(),
            "generation": st.integers(),
            "samples": st.integers(),
        },
    ).map(json.dumps),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(MESSAGES, st.binary(max_size=600)), max_size=12))
def test_peer_input_never_raises_and_every_error_is_answered(inputs: list[str | bytes]) -> None:
    protocol = NativeProtocol("fuzz", max_frame_bytes=400)
    for item in inputs:
        if isinstance(item, bytes):
            events = protocol.receive_bytes(item)
        else:
            events = protocol.receive_text(item)
        errors = [e for e in events if isinstance(e, PeerError)]
        replies = [json.loads(m) for m in protocol.data_to_send() if isinstance(m, str)]
        assert [r["code"] for r in replies if r["type"] == "error"] == [e.code for e in errors]
