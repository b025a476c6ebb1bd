"""Realtime transcription sessions at their edges, sans-I/O: unreadable and oversized messages,
binary frames, a closed session, and the beta API's formats, detections and error names
(transports/realtime_transcription.py, transports/realtime_transcription_events.py)."""

from __future__ import annotations

import json
from typing import Any

from transports.errors import PeerError
from transports.realtime_events import SemanticVad
from transports.realtime_transcription import TranscriptionChanged, TranscriptionProtocol


def fresh(**options: Any) -> TranscriptionProtocol:
    protocol = TranscriptionProtocol(id_seed="e", **options)
    protocol.data_to_send()  # session.created
    return protocol


def said(protocol: TranscriptionProtocol) -> list[dict[str, Any]]:
    return [json.loads(message) for message in protocol.data_to_send()]


def errors(protocol: TranscriptionProtocol) -> list[tuple[str, str | None]]:
    events = said(protocol)
    assert all(e["type"] == "error" for e in events), events
    return [(e["error"]["code"], e["error"]["param"]) for e in events]


def beta_update(protocol: TranscriptionProtocol, session: dict[str, Any]) -> list[Any]:
    event = {"type": "transcription_session.update", "session": session}
    return protocol.receive_text(json.dumps(event))


def test_unreadable_and_oversized_messages_and_binary_frames_are_errors_and_it_goes_on() -> None:
    protocol = fresh(max_message_chars=200)
    big = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 400})
    for message in ("{not json", big):
        [refused] = protocol.receive_text(message)
        assert isinstance(refused, PeerError)
    [refused] = protocol.receive_bytes(b"\x00\x01")
    assert isinstance(refused, PeerError)
    codes = [code for code, _ in errors(protocol)]
    assert codes == ["invalid_json", "message_too_large", "invalid_message"]
    protocol.receive_text(json.dumps({"type": "input_audio_buffer.clear"}))
    assert [e["type"] for e in said(protocol)] == ["input_audio_buffer.cleared"]


def test_an_update_whose_session_is_not_an_object_names_the_field() -> None:
    protocol = fresh()
    before = protocol.to_wire()
    protocol.receive_text(json.dumps({"type": "session.update", "session": "transcription"}))
    beta_update(protocol, {"input_audio_format": "pcm16", "colour": "red"})
    [(_, head), (_, beta)] = errors(protocol)
    assert head == "session"
    assert beta == "session.colour"
    assert protocol.to_wire() == before


def test_an_update_without_audio_changes_nothing_and_is_answered() -> None:
    protocol = fresh()
    before = protocol.to_wire()["audio"]
    events = protocol.receive_text(
        json.dumps({"type": "session.update", "session": {"type": "transcription"}})
    )
    assert events[-1] == TranscriptionChanged("voxline", None, None, ())
    [updated] = said(protocol)
    assert updated["type"] == "session.updated"
    assert updated["session"]["audio"] == before


def test_the_beta_update_takes_ulaw_semantic_vad_and_noise_reduction() -> None:
    protocol = fresh()
    beta_update(
        protocol,
        {
            "input_audio_format": "g711_ulaw",
            "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
            "input_audio_noise_reduction": {"type": "far_field"},
        },
    )
    [updated] = said(protocol)
    session = updated["session"]
    assert session["input_audio_format"] == "g711_ulaw"
    assert session["turn_detection"]["type"] == "semantic_vad"
    assert "eagerness" not in session["turn_detection"]  # the beta shape has none
    assert session["input_audio_noise_reduction"] == {"type": "far_field"}
    assert isinstance(protocol.input.config.turn_detection, SemanticVad)
    assert protocol.input.config.turn_detection.eagerness == "high"
    assert protocol.input.config.input_audio.encoding == "mulaw"


def test_the_beta_update_turns_detection_off_and_goes_back_to_pcm16() -> None:
    protocol = fresh()
    beta_update(protocol, {"input_audio_format": "pcm16", "turn_detection": None})
    [updated] = said(protocol)
    assert updated["session"]["input_audio_format"] == "pcm16"
    assert updated["session"]["turn_detection"] is None
    assert protocol.input.config.turn_detection is None


def test_a_beta_update_refused_by_voxline_names_the_beta_field() -> None:
    protocol = fresh()
    [refused] = beta_update(
        protocol, {"turn_detection": {"type": "server_vad", "create_response": True}}
    )
    assert isinstance(refused, PeerError)
    beta_update(protocol, {"include": ["item.input_audio_transcription.logprobs"]})
    assert errors(protocol) == [
        ("invalid_value", "session.turn_detection.create_response"),
        ("invalid_value", "session.include"),  # the same field in both APIs
    ]


def test_the_input_sides_messages_queued_by_the_adapter_keep_their_turn() -> None:
    protocol = fresh()
    protocol.queue('{"type": "input_audio_buffer.speech_started"}')
    protocol.receive_text(json.dumps({"type": "input_audio_buffer.clear"}))
    kinds = [e["type"] for e in said(protocol)]
    assert kinds == ["input_audio_buffer.speech_started", "input_audio_buffer.cleared"]


def test_a_closed_session_takes_nothing_and_says_nothing() -> None:
    protocol = fresh()
    protocol.close()
    protocol.data_to_send()
    assert protocol.receive_text(json.dumps({"type": "input_audio_buffer.clear"})) == []
    assert protocol.receive_text(json.dumps({"type": "response.create"})) == []
    assert protocol.data_to_send() == []
