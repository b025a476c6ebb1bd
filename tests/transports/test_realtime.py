"""The OpenAI-Realtime-compatible protocol (:mod:`transports.realtime`): the session, input
audio, and bad input, checked against the openai SDK's own types.

Every server event the protocol queues is validated with the SDK model of its ``type``; every
client event the tests send is first validated with the SDK's client event models, so both
directions match what ``client.realtime.connect(...)`` sends and expects
(:mod:`tests.transports.realtime_support`). Responses and conversation items are in
``test_realtime_conversation.py``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.realtime_call import RealtimeSink
from agent.session_events import MarkReached
from agent.turns import TurnConfig
from pipeline.events import AudioFrame
from tests.transports.realtime_support import (
    CLIENT_MODELS,
    SERVER_MODELS,
    append,
    client,
    fresh,
    server,
    tone,
    types,
)
from transports.g711 import pcm16_to_ulaw
from transports.realtime import PeerError, RealtimeProtocol
from transports.realtime_events import AudioPCMU, ServerVad
from transports.realtime_inbound import (
    CommitRequested,
    InputCleared,
    ResponseRequested,
    SessionUpdated,
)

# -- session ----------------------------------------------------------------------------------


def test_the_first_event_is_session_created_with_the_defaults() -> None:
    protocol = RealtimeProtocol(id_seed="t")
    [created] = server(protocol)
    assert created["type"] == "session.created"
    session = created["session"]
    assert session["type"] == "realtime"
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    model = SERVER_MODELS["session.created"].model_validate(created)
    assert model.session.audio.output.format.rate == 24000


def test_session_update_changes_only_the_fields_given() -> None:
    protocol = fresh()
    events = client(
        protocol,
        {
            "type": "session.update",
            "event_id": "c1",
            "session": {
                "type": "realtime",
                "instructions": "Be brief.",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    },
                    "output": {"voice": "marin", "format": {"type": "audio/pcmu"}},
                },
            },
        },
    )
    [updated] = [e for e in events if isinstance(e, SessionUpdated)]
    config = updated.config
    assert config.instructions == "Be brief."
    assert config.voice == "marin"
    assert config.input_format == AudioPCMU()
    assert config.turn_detection == ServerVad(silence_duration_ms=500)
    assert config.output_modalities == ("audio",)  # untouched
    [reply] = server(protocol)
    assert reply["type"] == "session.updated"
    assert reply["session"]["instructions"] == "Be brief."
    # audio now arrives as μ-law at 8 kHz
    payload = pcm16_to_ulaw(tone(0.1, 8000))
    chunks = client(
        protocol,
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(payload).decode()},
    )
    assert all(isinstance(c, AudioFrame) for c in chunks)


def test_turn_detection_null_turns_it_off() -> None:
    protocol = fresh()
    [updated] = client(
        protocol,
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        },
    )
    assert isinstance(updated, SessionUpdated)
    assert updated.config.turn_detection is None
    assert server(protocol)[0]["session"]["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"type": "transcription"}, "session.type"),
        ({"type": "realtime", "output_modalities": ["text", "audio"]}, "session.output_modalities"),
        (
            {"type": "realtime", "audio": {"output": {"speed": 3.0}}},
            "session.audio.output.speed",
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2.0}}},
            },
            "session.audio.input.turn_detection.threshold",
        ),
    ],
)
def test_an_impossible_session_update_is_refused_whole(session: dict[str, Any], param: str) -> None:
    protocol = fresh()
    before = protocol.config
    [event] = protocol.receive_text(
        json.dumps({"type": "session.update", "event_id": "c9", "session": session})
    )
    assert isinstance(event, PeerError)
    [error] = server(protocol)
    assert error["error"]["param"] == param
    assert error["error"]["event_id"] == "c9"
    assert error["error"]["type"] == "invalid_request_error"
    assert protocol.config == before


def test_the_voice_is_fixed_once_the_assistant_has_spoken() -> None:
    protocol = fresh()
    protocol.start_response(1)
    protocol.send_audio(1, tone(0.1, 24000), 24000)
    protocol.end_response(1)
    server(protocol)
    update = {
        "type": "session.update",
        "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}},
    }
    [event] = client(protocol, update)
    assert isinstance(event, PeerError)
    assert server(protocol)[0]["error"]["param"] == "session.audio.output.voice"


def voice_update(voice: str, *, beta: bool = False) -> dict[str, Any]:
    if beta:  # the beta API's place for it (the SDK's GA models do not have it)
        return {"type": "session.update", "session": {"type": "realtime", "voice": voice}}
    session = {"type": "realtime", "audio": {"output": {"voice": voice}}}
    return {"type": "session.update", "event_id": "ev1", "session": session}


@pytest.mark.parametrize(
    ("beta", "param"), [(False, "session.audio.output.voice"), (True, "session.voice")]
)
def test_a_voice_the_server_does_not_speak_is_refused_and_the_voice_stays(
    beta: bool, param: str
) -> None:
    protocol = RealtimeProtocol(voices={"joe", "joe-bright", "alloy"})
    server(protocol)
    [event] = (client if not beta else _raw)(protocol, voice_update("joe-bright", beta=beta))
    assert isinstance(event, SessionUpdated)
    assert server(protocol)[0]["session"]["audio"]["output"]["voice"] == "joe-bright"
    before = protocol.config
    [event] = (client if not beta else _raw)(protocol, voice_update("nobody", beta=beta))
    assert isinstance(event, PeerError)
    [error] = server(protocol)
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == param
    assert "unknown voice 'nobody'" in error["error"]["message"]
    assert "joe-bright" in error["error"]["message"]  # it says which voices there are
    assert protocol.config == before  # refused whole: the previous voice stays
    # the connection goes on
    [event] = client(protocol, voice_update("alloy"))
    assert isinstance(event, SessionUpdated)
    assert protocol.config.voice == "alloy"


def _raw(protocol: RealtimeProtocol, event: dict[str, Any]) -> list[Any]:
    return protocol.receive_text(json.dumps(event))


def test_an_unchanged_voice_is_accepted_after_the_assistant_has_spoken() -> None:
    protocol = RealtimeProtocol(voices={"joe", "cedar"})
    client(protocol, voice_update("joe"))
    protocol.start_response(1)
    protocol.send_audio(1, tone(0.1, 24000), 24000)
    protocol.end_response(1)
    server(protocol)
    assert isinstance(client(protocol, voice_update("joe"))[0], SessionUpdated)
    [event] = client(protocol, voice_update("cedar"))
    assert isinstance(event, PeerError)
    assert "once the assistant has spoken" in server(protocol)[-1]["error"]["message"]


# -- input audio ------------------------------------------------------------------------------


def test_appended_24_khz_audio_reaches_the_pipeline_at_16_khz() -> None:
    protocol = fresh()
    chunks: list[AudioFrame] = []
    for n in range(10):
        chunks += append(protocol, tone(1.0, 24000)[n * 4800 : (n + 1) * 4800])
    assert 15_600 < sum(c.num_samples for c in chunks) <= 16_000
    assert server(protocol) == []  # appends are not acknowledged


def test_a_commit_makes_a_user_item() -> None:
    protocol = fresh()
    append(protocol, tone(0.2, 24000))
    [event] = client(protocol, {"type": "input_audio_buffer.commit"})
    assert isinstance(event, CommitRequested)
    committed, added = server(protocol)
    assert committed["type"] == "input_audio_buffer.committed"
    assert committed["item_id"] == event.item_id == added["item"]["id"]
    assert added["item"]["role"] == "user"
    protocol.input_transcript_completed(event.item_id, "Hello there.", seconds=0.2)
    completed, done = server(protocol)
    assert completed["type"] == "conversation.item.input_audio_transcription.completed"
    assert completed["transcript"] == "Hello there."
    assert done["type"] == "conversation.item.done"
    assert done["item"]["content"][0]["transcript"] == "Hello there."


def test_committing_too_little_audio_is_an_error() -> None:
    protocol = fresh()
    append(protocol, tone(0.05, 24000))
    [event] = client(protocol, {"type": "input_audio_buffer.commit", "event_id": "c3"})
    assert isinstance(event, PeerError)
    assert event.code == "input_audio_buffer_commit_empty"
    [error] = server(protocol)
    assert error["error"]["event_id"] == "c3"


def test_clearing_the_input_drops_it() -> None:
    protocol = fresh()
    append(protocol, tone(0.2, 24000))
    assert client(protocol, {"type": "input_audio_buffer.clear"}) == [InputCleared()]
    assert types(server(protocol)) == ["input_audio_buffer.cleared"]
    [event] = client(protocol, {"type": "input_audio_buffer.commit"})
    assert isinstance(event, PeerError)


@pytest.mark.parametrize("audio", ["not base64!", base64.b64encode(b"\x00\x01\x02").decode()])
def test_undecodable_audio_is_an_error(audio: str) -> None:
    protocol = fresh()
    [event] = client(protocol, {"type": "input_audio_buffer.append", "audio": audio})
    assert isinstance(event, PeerError)
    assert server(protocol)[0]["error"]["param"] == "audio"


def test_server_vad_events_share_the_item_id() -> None:
    protocol = fresh()
    started = protocol.speech_started(16000)
    stopped = protocol.speech_stopped(48000)
    committed = protocol.commit_input()
    assert started == stopped == committed
    events = server(protocol)
    assert types(events) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
    ]
    assert events[0]["audio_start_ms"] == 1000
    assert events[1]["audio_end_ms"] == 3000
    assert protocol.speech_started(64000) != started  # the next turn is a new item
    protocol.input_transcript_delta(committed, "Hel")
    protocol.input_transcript_failed(committed, "no speech")
    assert types(server(protocol))[1:] == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.failed",
    ]


def test_transcription_off_sends_no_transcription_events() -> None:
    protocol = fresh()
    client(
        protocol,
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"transcription": None}}},
        },
    )
    server(protocol)
    item = protocol.commit_input()
    protocol.input_transcript_delta(item, "Hi")
    protocol.input_transcript_completed(item, "Hi.")
    assert "conversation.item.input_audio_transcription.completed" not in types(server(protocol))


def test_the_idle_timeout_event() -> None:
    protocol = fresh()
    protocol.idle_timeout(16000, 160000)
    [event] = server(protocol)
    assert event["type"] == "input_audio_buffer.timeout_triggered"
    assert (event["audio_start_ms"], event["audio_end_ms"]) == (1000, 10000)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        ("not json", "invalid_json", None),
        ("[]", "invalid_json", None),
        ('{"type": "dance", "event_id": "c7"}', "invalid_value", "type"),
        ("{}", "invalid_value", "type"),
        ('{"type": "input_audio_buffer.append", "audio": 5}', "invalid_value", "audio"),
        (
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"audio": {"input": {"format": {"type": "audio/opus"}}}},
                }
            ),
            "invalid_value",
            "session.audio.input.format.type",
        ),
        ('{"type": "transcription_session.update"}', "invalid_value", "type"),
    ],
)
def test_bad_events_get_an_error_event_and_the_session_goes_on(
    text: str, code: str, param: str | None
) -> None:
    protocol = fresh()
    [event] = protocol.receive_text(text)
    assert isinstance(event, PeerError)
    assert event.code == code
    [error] = server(protocol)
    assert error["error"]["code"] == code
    assert error["error"]["param"] == param
    assert client(protocol, {"type": "input_audio_buffer.clear"}) == [InputCleared()]


def test_binary_frames_and_oversized_messages_are_refused() -> None:
    protocol = RealtimeProtocol(id_seed="t", max_message_chars=100)
    server(protocol)
    assert protocol.receive_bytes(b"\x00")[0] == PeerError(
        "invalid_message", "binary frames are not part of this protocol"
    )
    [event] = protocol.receive_text(
        '{"type": "input_audio_buffer.append", "audio": "' + "A" * 200 + '"}'
    )
    assert isinstance(event, PeerError)
    assert event.code == "message_too_large"


def test_a_closed_protocol_says_nothing_more() -> None:
    protocol = fresh()
    protocol.close()
    assert protocol.receive_text('{"type": "input_audio_buffer.clear"}') == []
    protocol.speech_started(0)
    assert protocol.data_to_send() == []


@pytest.mark.anyio
async def test_the_sink_has_no_event_for_an_ssml_mark() -> None:
    protocol = fresh()
    send, receive = anyio.create_memory_object_stream[str | bytes](1000)
    with send, receive, anyio.fail_after(10):
        sink = RealtimeSink(protocol, send, TurnConfig())
        await sink.send_audio(1, tone(0.1, 24000))
        sent = receive.statistics().current_buffer_used
        await sink.send_event(MarkReached(1, "code", 50.0))
        assert receive.statistics().current_buffer_used == sent
    assert protocol.data_to_send() == []


CLIENT_ISH = st.fixed_dictionaries(
    {"type": st.sampled_from([*CLIENT_MODELS, "x"])},
    optional={
        "event_id": st.text(max_size=4) | st.integers(),
        "audio": st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode())
        | st.text(max_size=8),
        "item_id": st.text(max_size=6),
        "audio_end_ms": st.integers(-5, 5000),
        "content_index": st.integers(-1, 2),
        "response_id": st.text(max_size=6),
        "session": st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(["realtime", "transcription"]),
                "instructions": st.text(max_size=8) | st.integers(),
                "output_modalities": st.lists(
                    st.sampled_from(["text", "audio", "video"]), max_size=2
                ),
                "audio": st.fixed_dictionaries(
                    {},
                    optional={
                        "input": st.fixed_dictionaries(
                            {},
                            optional={
                                "format": st.sampled_from(
                                    [
                                        {"type": "audio/pcm", "rate": 24000},
                                        {"type": "audio/pcmu"},
                                        {"type": "audio/pcm", "rate": 1},
                                        {},
                                    ]
                                ),
                                "turn_detection": st.none()
                                | st.just({"type": "semantic_vad", "eagerness": "high"}),
                            },
                        ),
                        "output": st.fixed_dictionaries(
                            {}, optional={"voice": st.text(max_size=5), "speed": st.floats(0, 3)}
                        ),
                    },
                ),
            },
        ),
        "item": st.fixed_dictionaries(
            {"type": st.sampled_from(["message", "function_call", "function_call_output", "x"])},
            optional={
                "role": st.sampled_from(["user", "system", "assistant", "x"]),
                "content": st.lists(
                    st.fixed_dictionaries(
                        {
                            "type": st.sampled_from(["input_text", "output_text", "input_audio"]),
                            "text": st.text(max_size=5),
                        }
                    ),
                    max_size=2,
                ),
                "call_id": st.text(max_size=3),
                "output": st.text(max_size=3),
                "id": st.text(max_size=3),
            },
        ),
        "response": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "conversation": st.sampled_from(["auto", "none"]),
                "output_modalities": st.lists(st.sampled_from(["text", "audio"]), max_size=2),
            },
        ),
    },
).map(json.dumps)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80), CLIENT_ISH), max_size=12))
def test_peer_input_never_raises_and_every_reply_is_a_valid_server_event(inputs: list[str]) -> None:
    protocol = RealtimeProtocol(id_seed="f")
    generation = 0
    for text in inputs:
        for event in protocol.receive_text(text):
            if isinstance(event, ResponseRequested):
                generation += 1
                protocol.start_response(generation, event.params)
                protocol.send_text(generation, "Hi")
                protocol.send_audio(generation, b"\x00\x00" * 240, 24000)
        server(protocol)
    for active in range(1, generation + 1):
        protocol.end_response(active)
    server(protocol)
