"""Realtime responses and conversation items (:mod:`transports.realtime_conversation`, driven
through :class:`~transports.realtime.RealtimeProtocol`), checked against the openai SDK's own
types as in ``test_realtime.py``."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.transports.realtime_support import (
    client,
    fresh,
    server,
    tone,
    types,
)
from transports.realtime import PeerError
from transports.realtime_events import Item, ResponseParams
from transports.realtime_inbound import (
    CancelRequested,
    ItemCreated,
    ItemDeleted,
    ResponseRequested,
    TruncateRequested,
)

# -- responses --------------------------------------------------------------------------------


def test_a_spoken_response_streams_and_ends() -> None:
    protocol = fresh()
    [request] = client(protocol, {"type": "response.create"})
    assert request == ResponseRequested(ResponseParams())
    response_id = protocol.start_response(3)
    protocol.send_text(3, "Hello")
    protocol.send_audio(3, tone(0.5, 22050), 22050)
    protocol.send_text(3, " there.")
    protocol.send_audio(3, tone(0.5, 22050), 22050)
    protocol.end_response(3)
    events = server(protocol)
    assert types(events) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.delta",  # the resampler's tail
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert {e["response_id"] for e in events[1:] if "response_id" in e} == {response_id}
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert len(audio) == 2 * 24000  # one second of PCM16 at 24 kHz
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": "Hello there."}]


def test_a_second_response_while_one_is_active_is_refused() -> None:
    protocol = fresh()
    protocol.start_response(1)
    [event] = client(protocol, {"type": "response.create", "event_id": "c5"})
    assert isinstance(event, PeerError)
    assert event.code == "conversation_already_has_active_response"
    [out_of_band] = client(
        protocol, {"type": "response.create", "response": {"conversation": "none"}}
    )
    assert isinstance(out_of_band, ResponseRequested)


def test_the_client_cancels_a_response() -> None:
    protocol = fresh()
    response_id = protocol.start_response(2)
    protocol.send_audio(2, tone(0.2, 24000), 24000)
    server(protocol)
    assert client(protocol, {"type": "response.cancel"}) == [CancelRequested(2, response_id)]
    events = server(protocol)
    assert events[-1]["response"]["status"] == "cancelled"
    assert events[-1]["response"]["status_details"] == {
        "type": "cancelled",
        "reason": "client_cancelled",
    }
    protocol.send_audio(2, tone(0.2, 24000), 24000)  # in flight when it was cancelled
    protocol.end_response(2)
    assert server(protocol) == []
    [event] = client(protocol, {"type": "response.cancel"})
    assert isinstance(event, PeerError)
    assert event.code == "response_cancel_not_active"


def test_output_audio_buffer_clear_cuts_the_response() -> None:
    protocol = fresh()
    response_id = protocol.start_response(2)
    assert client(protocol, {"type": "output_audio_buffer.clear"}) == [
        CancelRequested(2, response_id, clear_audio=True)
    ]
    assert types(server(protocol))[-2:] == ["response.done", "output_audio_buffer.cleared"]
    assert client(protocol, {"type": "output_audio_buffer.clear"}) == []


def test_barge_in_then_truncation_to_what_was_heard() -> None:
    protocol = fresh()
    protocol.start_response(4)
    protocol.send_text(4, "Our opening hours are nine to five.")
    protocol.send_audio(4, tone(1.0, 22050), 22050)
    item_id = server(protocol)[1]["item"]["id"]
    protocol.speech_started(32000)
    protocol.cancel_response(4)
    events = server(protocol)
    assert types(events)[0] == "input_audio_buffer.speech_started"
    assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"
    truncate = {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 400,
    }
    assert client(protocol, truncate) == [TruncateRequested(item_id, 4, 400, 8820)]
    [truncated] = server(protocol)
    assert truncated == {
        "type": "conversation.item.truncated",
        "event_id": truncated["event_id"],
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 400,
    }


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"audio_end_ms": 5000}, "invalid_value"),
        ({"content_index": 1}, "invalid_value"),
        ({"item_id": "item_nope"}, "item_truncate_invalid_item_id"),
    ],
)
def test_a_truncation_that_does_not_fit_is_refused(changes: dict[str, Any], code: str) -> None:
    protocol = fresh()
    protocol.start_response(4)
    protocol.send_audio(4, tone(1.0, 24000), 24000)
    item_id = server(protocol)[1]["item"]["id"]
    truncate = {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 400,
        **changes,
    }
    [event] = client(protocol, truncate)
    assert isinstance(event, PeerError)
    assert event.code == code


def test_a_text_response() -> None:
    protocol = fresh()
    [request] = client(
        protocol, {"type": "response.create", "response": {"output_modalities": ["text"]}}
    )
    assert isinstance(request, ResponseRequested)
    protocol.start_response(5, request.params)
    protocol.send_text(5, "Hi.")
    protocol.send_audio(5, tone(0.1, 24000), 24000)  # a text response has no audio
    protocol.end_response(5)
    events = server(protocol)
    assert "response.output_audio.delta" not in types(events)
    assert "response.output_text.delta" in types(events)
    assert events[-1]["response"]["output"][0]["content"] == [
        {"type": "output_text", "text": "Hi."}
    ]


def test_a_function_call_response() -> None:
    protocol = fresh()
    protocol.start_response(6)
    item_id = protocol.send_function_call(
        6, call_id="call_1", name="book_table", arguments='{"party_size": 4}'
    )
    protocol.end_response(6)
    events = server(protocol)
    assert types(events) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert events[-1]["response"]["output"][0]["id"] == item_id
    output = {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'},
    }
    [created] = client(protocol, output)
    assert isinstance(created, ItemCreated)
    assert created.previous_item_id == item_id


def test_responses_are_our_errors_when_misused() -> None:
    protocol = fresh()
    with pytest.raises(ValueError, match="no response"):
        protocol.send_audio(9, b"\x00\x00", 24000)
    protocol.start_response(9)
    with pytest.raises(ValueError, match="already"):
        protocol.start_response(9)


def test_an_error_of_ours_is_a_server_error() -> None:
    protocol = fresh()
    protocol.send_error("The agent failed; try again.")
    [event] = server(protocol)
    assert event["error"]["type"] == "server_error"


# -- conversation items -----------------------------------------------------------------------


def test_items_are_created_retrieved_and_deleted() -> None:
    protocol = fresh()
    create = {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "What time is it?"}],
        },
    }
    [created] = client(protocol, create)
    assert isinstance(created, ItemCreated)
    assert created.item.text == "What time is it?"
    item_id = created.item.id
    assert item_id is not None
    assert types(server(protocol)) == ["conversation.item.added", "conversation.item.done"]
    assert client(protocol, {"type": "conversation.item.retrieve", "item_id": item_id}) == []
    [retrieved] = server(protocol)
    assert retrieved["item"]["content"][0]["text"] == "What time is it?"
    delete = {"type": "conversation.item.delete", "item_id": item_id}
    assert client(protocol, delete) == [ItemDeleted(item_id)]
    assert types(server(protocol)) == ["conversation.item.deleted"]
    [missing] = client(protocol, delete)
    assert isinstance(missing, PeerError)
    assert missing.code == "item_delete_invalid_item_id"


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("conversation.item.retrieve", "item_retrieve_invalid_item_id"),
        ("conversation.item.delete", "item_delete_invalid_item_id"),
        ("conversation.item.truncate", "item_truncate_invalid_item_id"),
    ],
)
def test_an_unknown_item_gets_openais_code_for_the_request(kind: str, code: str) -> None:
    protocol = fresh()
    request: dict[str, Any] = {"type": kind, "item_id": "item_nope", "event_id": "ev_1"}
    if kind == "conversation.item.truncate":
        request |= {"content_index": 0, "audio_end_ms": 0}
    [refused] = client(protocol, request)
    assert isinstance(refused, PeerError)
    [event] = server(protocol)
    assert event["type"] == "error"
    assert event["error"] == {
        "type": "invalid_request_error",
        "code": code,
        "message": "Item with item_id 'item_nope' not found",
        "param": "item_id",
        "event_id": "ev_1",
    }


def test_items_go_where_the_client_puts_them() -> None:
    protocol = fresh()

    def create(text: str, previous: str | None = None) -> Item:
        event: dict[str, Any] = {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": text}],
            },
        }
        if previous is not None:
            event["previous_item_id"] = previous
        [created] = client(protocol, event)
        assert isinstance(created, ItemCreated)
        return created.item

    first = create("one")
    create("three")
    second = create("two", previous=first.id)
    create("zero", previous="root")
    server(protocol)
    assert second.id is not None
    assert [i["content"][0]["text"] for i in protocol.conversation.items.values()] == [
        "zero",
        "one",
        "two",
        "three",
    ]


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "message", "role": "robot", "content": []}, "item.role"),
        (
            {"type": "message", "role": "user", "content": [{"type": "output_text", "text": "x"}]},
            "item.content[0].type",
        ),
        ({"type": "function_call_output", "call_id": "c"}, "item"),
        ({"type": "mcp_call"}, "item.type"),
    ],
)
def test_items_that_make_no_sense_are_refused(item: dict[str, Any], param: str) -> None:
    protocol = fresh()
    [event] = protocol.receive_text(json.dumps({"type": "conversation.item.create", "item": item}))
    assert isinstance(event, PeerError)
    assert server(protocol)[0]["error"]["param"] == param
