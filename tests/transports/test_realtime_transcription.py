"""Realtime transcription sessions, sans-I/O: every server event is validated against the
``openai`` SDK's model of its type (GA; the beta API's for ``transcription_session.updated``)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pipeline.events import AudioFrame
from tests.transports.realtime_support import CLIENT_MODELS, SERVER_MODELS, tone
from transports.errors import PeerError
from transports.realtime_events import ServerVad
from transports.realtime_inbound import CommitRequested, InputCleared, SessionUpdated
from transports.realtime_transcription import TranscriptionChanged, TranscriptionProtocol

beta = pytest.importorskip("openai.types.beta.realtime")


def fresh() -> TranscriptionProtocol:
    protocol = TranscriptionProtocol(id_seed="t", models=("voxline", "base", "whisper-1"))
    [created] = server(protocol)
    assert created["session"]["type"] == "transcription"
    return protocol


def server(protocol: TranscriptionProtocol) -> list[dict[str, Any]]:
    """The queued server events, each validated against the SDK model of its type."""
    events = [json.loads(m) for m in protocol.data_to_send()]
    for event in events:
        if event["type"] == "transcription_session.updated":
            # The beta model requires ``client_secret``, which its own docstring says a
            # WebSocket update never carries: validated with a placeholder for it.
            session = {**event["session"], "client_secret": {"expires_at": 0, "value": ""}}
            beta.TranscriptionSessionUpdatedEvent.model_validate({**event, "session": session})
        else:
            SERVER_MODELS[event["type"]].model_validate(event)
        assert event["event_id"].startswith("event_")
    return events


def send(protocol: TranscriptionProtocol, event: dict[str, Any], *, sdk: bool = True) -> list[Any]:
    if sdk:  # a GA client event as the SDK types it
        CLIENT_MODELS[event["type"]].model_validate(event)
    return protocol.receive_text(json.dumps(event))


def update(
    protocol: TranscriptionProtocol, input_: dict[str, Any], *, sdk: bool = True, **more: Any
) -> list[Any]:
    session = {"type": "transcription", "audio": {"input": input_}}
    return send(protocol, {"type": "session.update", "session": session, **more}, sdk=sdk)


def test_the_session_is_created_as_a_transcription_session_with_server_vad() -> None:
    protocol = TranscriptionProtocol(id_seed="t")
    [created] = server(protocol)
    session = created["session"]
    assert (session["object"], session["id"]) == ("realtime.transcription_session", "sess_t1")
    detection = session["audio"]["input"]["turn_detection"]
    assert detection["type"] == "server_vad"
    assert "create_response" not in detection  # a transcription session never responds
    assert session["audio"]["input"]["transcription"]["model"] == "voxline"
    assert protocol.input.config.turn_detection == ServerVad(
        threshold=0.5,
        prefix_padding_ms=300,
        silence_duration_ms=500,
        create_response=False,
        interrupt_response=False,
    )


def test_an_update_sets_the_decoding_and_the_input_side() -> None:
    protocol = fresh()
    events = update(
        protocol,
        {
            "format": {"type": "audio/pcmu"},
            "transcription": {
                "model": "whisper-1",
                "language": "fr",
                "prompt": "Réservations.",
                "keywords": ["Voxline"],
            },
            "turn_detection": None,
            "noise_reduction": {"type": "near_field"},
        },
    )
    assert [type(e) for e in events] == [SessionUpdated, TranscriptionChanged]
    assert events[1] == TranscriptionChanged("whisper-1", "fr", "Réservations.", ("Voxline",))
    [updated] = server(protocol)
    shown = updated["session"]["audio"]["input"]
    assert shown["format"] == {"type": "audio/pcmu"}
    assert shown["transcription"]["keywords"] == ["Voxline"]
    assert shown["turn_detection"] is None
    config = protocol.input.config
    assert config.turn_detection is None
    assert config.input_audio.encoding == "mulaw"


def test_a_turn_detection_keeps_the_input_side_from_responding() -> None:
    protocol = fresh()
    update(protocol, {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}})
    [updated] = server(protocol)
    assert updated["session"]["audio"]["input"]["turn_detection"]["eagerness"] == "high"
    detection = protocol.input.config.turn_detection
    assert detection is not None
    assert (detection.create_response, detection.interrupt_response) == (False, False)


@pytest.mark.parametrize(
    ("input_", "param"),
    [
        ({"transcription": {"languages": ["en", "fr"]}}, "transcription.languages"),
        ({"transcription": {"delay": "low"}}, "transcription.delay"),
        ({"transcription": {"model": "gpt-4o-transcribe-diarize"}}, "transcription.model"),
        ({"transcription": {"language": "xx"}}, "transcription.language"),
        ({"transcription": None}, "transcription"),
        ({"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}, "idle_timeout_ms"),
        ({"turn_detection": {"type": "server_vad", "create_response": True}}, "create_response"),
        ({"turn_detection": {"type": "server_vad", "threshold": 2}}, "threshold"),
        ({"noise_reduction": {"type": "near_field", "strength": 0.5}}, "strength"),
        ({"format": {"type": "audio/pcm", "rate": 11}}, "format"),
    ],
)
def test_what_a_transcription_session_cannot_do_is_an_error_naming_the_param(
    input_: dict[str, Any], param: str
) -> None:
    protocol = fresh()
    before = protocol.to_wire()
    [refused] = update(protocol, input_, sdk=False, event_id="u1")  # (rate 11: not the SDK's)
    assert isinstance(refused, PeerError)
    [error] = server(protocol)
    suffix = "" if param == "format" else param.rsplit(".", 1)[-1]
    assert error["error"]["param"].startswith("session.audio.input.")
    assert error["error"]["param"].endswith(suffix)
    assert error["error"]["event_id"] == "u1"
    assert protocol.to_wire() == before  # refused whole
    update(protocol, {"transcription": {"language": "de"}})  # and the session goes on
    assert [e["type"] for e in server(protocol)] == ["session.updated"]


def test_unknown_fields_realtime_sessions_and_response_events_are_refused() -> None:
    protocol = fresh()
    unknown = {"type": "transcription", "instructions": "Be brief."}
    send(protocol, {"type": "session.update", "session": unknown}, sdk=False)
    send(protocol, {"type": "session.update", "session": {"type": "realtime"}})
    send(
        protocol,
        {"type": "session.update", "session": {"type": "transcription"}, "x": 1},
        sdk=False,
    )
    send(
        protocol,
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "include": ["item.input_audio_transcription.logprobs"],
            },
        },
    )
    send(protocol, {"type": "response.create"})
    send(protocol, {"type": "conversation.item.retrieve", "item_id": "x"})
    send(protocol, {"type": "no.such.event"}, sdk=False)
    params = [e["error"]["param"] for e in server(protocol)]
    assert params == [
        "session.instructions",
        "session.type",
        "x",
        "session.include",
        "type",
        "type",
        "type",
    ]


def test_the_beta_update_is_answered_in_the_beta_shape() -> None:
    protocol = fresh()
    event = {
        "type": "transcription_session.update",
        "session": {
            "input_audio_format": "g711_alaw",
            "input_audio_transcription": {"model": "whisper-1", "language": "es"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 800},
        },
    }
    beta.TranscriptionSessionUpdate.model_validate(event)
    events = send(protocol, event, sdk=False)
    assert events[-1] == TranscriptionChanged("whisper-1", "es", None, ())
    [updated] = server(protocol)
    session = updated["session"]
    assert updated["type"] == "transcription_session.updated"
    assert session["input_audio_format"] == "g711_alaw"
    assert session["turn_detection"]["silence_duration_ms"] == 800
    assert protocol.input.config.input_audio.encoding == "alaw"
    # its errors name the beta API's fields
    event["session"] = {"turn_detection": {"type": "server_vad", "threshold": 3}}
    send(protocol, event, sdk=False)
    event["session"] = {"input_audio_transcription": {"model": "nope"}}
    send(protocol, event, sdk=False)
    params = [e["error"]["param"] for e in server(protocol)]
    assert params == ["session.turn_detection.threshold", "session.input_audio_transcription.model"]


def test_the_input_side_answers_appends_commits_and_clears_in_order() -> None:
    protocol = fresh()
    frames = send(protocol, {"type": "input_audio_buffer.append", "audio": _b64(tone(0.2, 24000))})
    assert frames
    assert all(isinstance(f, AudioFrame) for f in frames)
    [commit] = send(protocol, {"type": "input_audio_buffer.commit"})
    assert isinstance(commit, CommitRequested)
    update(protocol, {"transcription": {"language": "en"}})
    [cleared] = send(protocol, {"type": "input_audio_buffer.clear"})
    assert isinstance(cleared, InputCleared)
    # what the input side said before the update goes out before session.updated
    assert [e["type"] for e in server(protocol)] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "session.updated",
        "input_audio_buffer.cleared",
    ]
    protocol.input.input_transcript_delta(commit.item_id, "hello")
    protocol.input.input_transcript_completed(commit.item_id, "hello there", seconds=0.2)
    kinds = [e["type"] for e in server(protocol)]
    assert kinds == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ]


def _b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()
