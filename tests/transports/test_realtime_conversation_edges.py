"""Realtime responses at their edges, sans-I/O (transports/realtime_conversation.py through
:class:`~transports.realtime.RealtimeProtocol`): what arrives for a reply that is not (or no
longer) being written, a failed reply, and the transcript of a truncated one."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest

from tests.transports.realtime_support import client, fresh, server, tone, types
from transports.errors import PeerError
from transports.realtime import RealtimeProtocol


def test_what_comes_for_a_reply_not_being_written_is_dropped() -> None:
    protocol = fresh()
    protocol.start_response(8)
    protocol.send_text(8, "")  # an empty delta says nothing
    protocol.end_response(8)
    protocol.send_text(8, "after its end")
    protocol.send_audio(8, tone(0.1, 16000), 16000)
    assert protocol.send_function_call(8, call_id="c", name="f", arguments="{}") == ""
    protocol.end_response(8)  # twice: nothing more
    assert types(server(protocol)) == ["response.created", "response.done"]
    with pytest.raises(ValueError, match="no response was started for generation 7"):
        protocol.send_text(7, "never started")  # the adapter's mistake, not the peer's


def test_a_failed_reply_carries_its_error_in_the_status_details() -> None:
    protocol = fresh()
    protocol.start_response(2)
    protocol.send_text(2, "Let me")
    protocol.fail_response(2, "the model went away", code="llm_unavailable")
    done = server(protocol)[-1]
    assert done["type"] == "response.done"
    assert done["response"]["status"] == "failed"
    details = done["response"]["status_details"]
    assert details["type"] == "failed"
    assert details["error"] == {
        "type": "server_error",
        "code": "llm_unavailable",
        "message": "the model went away",
    }
    assert done["response"]["output"][0]["status"] == "incomplete"


def test_a_truncated_replys_item_keeps_only_the_text_heard() -> None:
    protocol = fresh()
    protocol.truncated_transcript(9, "nothing")  # no such reply: nothing happens
    protocol.start_response(4)
    protocol.send_text(4, "Our opening hours are nine to five.")
    protocol.send_audio(4, tone(1.0, 22050), 22050)
    item_id = server(protocol)[1]["item"]["id"]
    protocol.cancel_response(4)
    server(protocol)
    protocol.truncated_transcript(4, "Our opening")
    client(protocol, {"type": "conversation.item.retrieve", "item_id": item_id})
    [retrieved] = server(protocol)
    assert retrieved["type"] == "conversation.item.retrieved"
    assert retrieved["item"]["content"][0]["transcript"] == "Our opening"


def test_a_function_call_item_without_its_name_is_refused() -> None:
    protocol = fresh()
    item = {"type": "function_call", "call_id": "c", "arguments": "{}"}
    [event] = protocol.receive_text(json.dumps({"type": "conversation.item.create", "item": item}))
    assert isinstance(event, PeerError)
    assert server(protocol)[0]["error"]["param"] == "item"


def test_a_function_call_item_with_name_and_arguments_is_added() -> None:
    protocol = fresh()
    item = {"type": "function_call", "call_id": "c", "name": "lookup", "arguments": "{}"}
    client(protocol, {"type": "conversation.item.create", "item": item})
    [added] = [e for e in server(protocol) if e["type"] == "conversation.item.added"]
    assert (added["item"]["type"], added["item"]["name"]) == ("function_call", "lookup")


def test_each_response_done_is_followed_by_the_rate_limits_of_what_was_said() -> None:
    asked: list[tuple[str, int | Literal["inf"]]] = []

    def limits(said: str, max_output_tokens: int | Literal["inf"], /) -> list[dict[str, Any]]:
        asked.append((said, max_output_tokens))
        return [{"name": "tokens", "limit": 1000, "remaining": 990, "reset_seconds": 60.0}]

    protocol = RealtimeProtocol(id_seed="r", rate_limits=limits)
    protocol.data_to_send()
    protocol.start_response(1)
    protocol.send_text(1, "Hi.")
    protocol.end_response(1)
    events = server(protocol)
    assert types(events)[-2:] == ["response.done", "rate_limits.updated"]
    assert events[-1]["rate_limits"][0]["remaining"] == 990
    assert asked == [("Hi.", "inf")]
