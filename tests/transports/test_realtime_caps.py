"""The Realtime protocol's byte caps (:mod:`transports.realtime_caps`): a request over one is
refused whole with an ``error`` naming the param (``value_too_large``) and the session goes on
as it was; the conversation's total prunes its oldest items instead, telling the client and
the session."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.transports.realtime_support import append, client, fresh, server, tone, types
from transports import realtime_caps as caps
from transports.errors import PeerError
from transports.realtime_inbound import ItemCreated, ItemDeleted, ResponseRequested


def tool(name: str, description: str = "") -> dict[str, Any]:
    parameters = {"type": "object", "properties": {}}
    return {"type": "function", "name": name, "description": description, "parameters": parameters}


def user_text(text: str, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }
    if item_id is not None:
        item["id"] = item_id
    return {"type": "conversation.item.create", "item": item}


LONG_INSTRUCTIONS = "x" * (caps.MAX_INSTRUCTIONS_CHARS + 1)
MANY_TOOLS = [tool(f"t{n}") for n in range(caps.MAX_TOOLS + 1)]
BIG_TOOLS = [tool(f"t{n}", "d" * 3000) for n in range(caps.MAX_TOOLS_BYTES // 3000 + 1)]
LONG_OUTPUT = "o" * (caps.MAX_ITEM_BYTES + 1)
BIG_OUTPUT = {"type": "function_call_output", "call_id": "c", "output": LONG_OUTPUT}
SESSION = {"type": "realtime"}


@pytest.mark.parametrize(
    ("event", "param", "says"),
    [
        pytest.param(
            {"type": "session.update", "session": {**SESSION, "instructions": LONG_INSTRUCTIONS}},
            "session.instructions", f"the limit is {caps.MAX_INSTRUCTIONS_CHARS}",
            id="instructions",
        ),
        pytest.param(
            {"type": "response.create", "response": {"instructions": LONG_INSTRUCTIONS}},
            "response.instructions", f"the limit is {caps.MAX_INSTRUCTIONS_CHARS}",
            id="response instructions",
        ),
        pytest.param(
            {"type": "session.update", "session": {"type": "realtime", "tools": MANY_TOOLS}},
            "session.tools", f"129 tools: the limit is {caps.MAX_TOOLS}", id="tool count",
        ),
        pytest.param(
            {"type": "response.create", "response": {"tools": BIG_TOOLS}},
            "response.tools", f"the limit is {caps.MAX_TOOLS_BYTES}", id="tool bytes",
        ),
        pytest.param(
            user_text("t" * (caps.MAX_TYPED_CHARS + 1)),
            "item.content", f"typed text of 32769 characters: the limit is {caps.MAX_TYPED_CHARS}",
            id="typed text",
        ),
        pytest.param(
            {"type": "conversation.item.create", "item": BIG_OUTPUT},
            "item", f"the limit is {caps.MAX_ITEM_BYTES}", id="item content",
        ),
        pytest.param(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "input": [BIG_OUTPUT],
                },
            },
            "response.input[0]", f"the limit is {caps.MAX_ITEM_BYTES}", id="response input item",
        ),
    ],
)  # fmt: skip
def test_a_request_over_a_cap_is_refused_naming_its_param_and_the_session_goes_on(
    event: dict[str, Any], param: str, says: str
) -> None:
    protocol = fresh()
    [refused] = client(protocol, {**event, "event_id": "mine"})
    assert isinstance(refused, PeerError)
    assert refused.code == caps.TOO_LARGE
    [error] = server(protocol)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["code"] == "value_too_large"
    assert error["error"]["param"] == param
    assert error["error"]["event_id"] == "mine"
    assert says in error["error"]["message"]
    # nothing of it was applied, and the session takes the next request
    assert protocol.config.instructions == ""
    assert protocol.config.tools == ()
    assert protocol.conversation.items == {}
    assert isinstance(client(protocol, user_text("hello"))[0], ItemCreated)
    assert isinstance(client(protocol, {"type": "response.create"})[0], ResponseRequested)


def test_requests_at_the_caps_are_taken() -> None:
    protocol = fresh()
    at_limit = {
        "type": "realtime",
        "instructions": "i" * caps.MAX_INSTRUCTIONS_CHARS,
        "tools": [tool(f"t{n}") for n in range(caps.MAX_TOOLS)],
    }
    client(protocol, {"type": "session.update", "session": at_limit})
    assert types(server(protocol)) == ["session.updated"]
    assert len(protocol.config.tools) == caps.MAX_TOOLS
    [created] = client(protocol, user_text("t" * caps.MAX_TYPED_CHARS))
    assert isinstance(created, ItemCreated)


def test_an_append_of_15_mib_of_base64_is_legal_and_more_is_refused() -> None:
    protocol = fresh()
    assert append(protocol, tone(1.0, 24000))  # audio reaches the pipeline
    big = base64.b64encode(bytes(caps.MAX_APPEND_AUDIO_BYTES + 2)).decode()
    assert len(big) < caps.MAX_MESSAGE_BYTES  # within the message's limit, not the audio's
    [refused] = client(protocol, {"type": "input_audio_buffer.append", "audio": big})
    assert isinstance(refused, PeerError)
    [error] = server(protocol)
    assert error["error"]["param"] == "audio"
    assert f"(limit {caps.MAX_APPEND_AUDIO_BYTES})" in error["error"]["message"]


def test_past_its_total_the_conversation_prunes_its_oldest_items_and_says_so() -> None:
    protocol = fresh()
    text = "w" * caps.MAX_TYPED_CHARS
    client(protocol, user_text(text, "item_0"))
    fitting = caps.MAX_CONVERSATION_BYTES // protocol.conversation.size  # items the total holds
    for n in range(1, fitting):
        client(protocol, user_text(text, f"item_{n}"))
    assert protocol.conversation.size <= caps.MAX_CONVERSATION_BYTES
    assert len(protocol.conversation.items) == fitting
    assert "conversation.item.deleted" not in types(server(protocol))
    events = client(protocol, user_text(text, "item_new"))
    # the oldest item goes: the client is told, and so is the session (after the new item)
    assert [type(e) for e in events] == [ItemCreated, ItemDeleted]
    assert events[1] == ItemDeleted("item_0")
    sent = server(protocol)
    assert [e["item_id"] for e in sent if e["type"] == "conversation.item.deleted"] == ["item_0"]
    assert "item_0" not in protocol.conversation.items
    assert list(protocol.conversation.items)[-1] == "item_new"
    assert protocol.conversation.size <= caps.MAX_CONVERSATION_BYTES


def test_an_item_being_written_is_never_pruned() -> None:
    protocol = fresh()
    protocol.start_response(1)
    protocol.send_text(1, "Let me think")  # the assistant's item, first in the conversation
    [writing] = list(protocol.conversation.items)
    text = "w" * caps.MAX_TYPED_CHARS
    pruned: list[Any] = []
    for n in range(caps.MAX_CONVERSATION_BYTES // caps.MAX_TYPED_CHARS + 2):
        events = client(protocol, user_text(text, f"item_{n}"))
        pruned += [e for e in events if isinstance(e, ItemDeleted)]
    assert writing in protocol.conversation.items
    assert pruned[0] == ItemDeleted("item_0")
    protocol.end_response(1)
    server(protocol)
