"""How much a ``/v1/realtime`` client may make the server hold: the byte caps (sans-I/O).

Every cap has OpenAI's answer when it is exceeded: the request is refused whole with an
``error`` event (``invalid_request_error``, code ``value_too_large``, the ``param`` named), and
the session goes on as it was; except the conversation's total, which prunes the oldest items
(as OpenAI's truncation drops the oldest items from the model's context), each with a
``conversation.item.deleted``.

=================================  ==========  ================================================
what                               cap         where it is checked
=================================  ==========  ================================================
one event (a WebSocket message)    16 MiB      the socket (:mod:`agent.ws_io`: closed 1009);
                                               the protocol (an ``error``: the data channel)
audio in one ``append``            15 MiB      of base64 (OpenAI's limit): 11.25 MiB decoded
``instructions``                   128 Ki      characters (``session.``, ``response.``): about
                                               32k tokens, the whole context of OpenAI's model
``tools``                          128         tools in one list, as OpenAI's limit
``tools``, all of them             256 KiB     their JSON (names, descriptions, schemas)
one item's content                 256 KiB     UTF-8 bytes of its text, transcripts, arguments
                                               and output (``input_audio`` is not kept)
typed text in one item             32 Ki       characters of its ``input_text``/``text`` parts
the conversation                   4 MiB       JSON of the items kept; the oldest are pruned
=================================  ==========  ================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from transports.realtime_events import FunctionTool, Item

__all__ = [
    "MAX_APPEND_AUDIO_BYTES",
    "MAX_CONVERSATION_BYTES",
    "MAX_INSTRUCTIONS_CHARS",
    "MAX_ITEM_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_TOOLS",
    "MAX_TOOLS_BYTES",
    "MAX_TYPED_CHARS",
    "TOO_LARGE",
    "instructions_problem",
    "item_cap_problem",
    "tools_problem",
    "wire_size",
]

#: one client event, as a WebSocket message (the largest legal one: a 15 MiB ``append``)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: decoded audio in one ``input_audio_buffer.append``: OpenAI's limit, 15 MiB of base64
MAX_APPEND_AUDIO_BYTES = 15 * 1024 * 1024 // 4 * 3
#: characters of ``instructions`` (a session's, or one response's)
MAX_INSTRUCTIONS_CHARS = 128 * 1024
#: tools in one list (OpenAI's limit), and the bytes of their JSON together
MAX_TOOLS = 128
MAX_TOOLS_BYTES = 256 * 1024
#: UTF-8 bytes of one item's content (text, transcripts, function arguments and output)
MAX_ITEM_BYTES = 256 * 1024
#: characters of typed text (``input_text``/``text`` parts) in one item
MAX_TYPED_CHARS = 32 * 1024
#: JSON bytes of the items a conversation keeps; the oldest are pruned beyond it
MAX_CONVERSATION_BYTES = 4 * 1024 * 1024

#: the ``error`` code of a request over a cap
TOO_LARGE = "value_too_large"

_encoder = msgspec.json.Encoder()


def instructions_problem(instructions: str | None, param: str) -> tuple[str, str] | None:
    """``(param, message)`` for ``instructions`` over :data:`MAX_INSTRUCTIONS_CHARS`."""
    if instructions is not None and len(instructions) > MAX_INSTRUCTIONS_CHARS:
        size = len(instructions)
        return param, f"instructions of {size} characters: the limit is {MAX_INSTRUCTIONS_CHARS}"
    return None


def tools_problem(tools: Sequence[FunctionTool], param: str) -> tuple[str, str] | None:
    """``(param, message)`` for more than :data:`MAX_TOOLS` tools, or tools whose JSON is
    over :data:`MAX_TOOLS_BYTES`."""
    if len(tools) > MAX_TOOLS:
        return param, f"{len(tools)} tools: the limit is {MAX_TOOLS}"
    size = len(_encoder.encode(tools))
    if size > MAX_TOOLS_BYTES:
        return param, f"tools of {size} bytes of JSON: the limit is {MAX_TOOLS_BYTES}"
    return None


def item_cap_problem(item: Item) -> tuple[str, str] | None:
    """``(param, message)`` when a client item is over a cap (the param under ``item``)."""
    typed = sum(len(p.text or "") for p in item.content if p.type in ("input_text", "text"))
    if typed > MAX_TYPED_CHARS:
        return "item.content", f"typed text of {typed} characters: the limit is {MAX_TYPED_CHARS}"
    kept = [item.arguments, item.output, item.name]
    kept += [p.text for p in item.content] + [p.transcript for p in item.content]
    size = sum(len(text.encode()) for text in kept if text)
    if size > MAX_ITEM_BYTES:
        return "item", f"item content of {size} bytes: the limit is {MAX_ITEM_BYTES}"
    return None


def wire_size(wire: object) -> int:
    """The bytes an item (wire form) takes in the conversation: its JSON."""
    return len(_encoder.encode(wire))
