"""What a Realtime client's request may ask, checked before :class:`~transports.realtime.
RealtimeProtocol` applies it. Sans-I/O: plain functions of the request and the session.

Each check returns a :class:`Refusal` (the ``error`` event's ``code``, ``message`` and
``param``) or ``None``; the protocol answers a refusal with an ``invalid_request_error`` and
applies nothing of the request ("their error": the connection goes on).

- :func:`decode_refusal`: a message that did not decode (an unknown ``type``, a bad field).
- :func:`response_refusal`: ``response.create``'s own settings (modalities, tools, the token
  limit, instructions and input items over their caps).
- :func:`item_refusal`: ``conversation.item.create`` (the item, its id, ``previous_item_id``).
- :func:`truncate_target`: ``conversation.item.truncate`` (an assistant audio item, a position
  within what was sent).
- :func:`override_refusal`: **the override rule**, for a client whose key may not replace the
  agent's instructions and tools (the protocol's ``overrides=False``, from the key's grants:
  :mod:`agent.grants`). It may not set ``session.instructions`` or ``session.tools`` to
  anything but what the session has, give a response ``instructions`` or ``tools`` of its own,
  or add a ``system`` message (``conversation.item.create``, ``response.input``): refused whole
  with code :data:`CODE` naming the param. Sending the session's own values back (as a client
  that echoes ``session.created`` does) is no override. :func:`spec_override` is the same rule
  for a session given before the connection (a client secret's, a WebRTC offer's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import UnsetType

from transports import realtime_caps as caps
from transports.audio import OutboundAudio, samples_to_ms
from transports.realtime_conversation import item_problem
from transports.realtime_events import (
    CLIENT_EVENT_TYPES,
    ConversationItemCreate,
    ConversationItemTruncate,
    Item,
    RealtimeSessionConfig,
    ResponseCreate,
    ResponseParams,
    SessionSpec,
    SessionUpdate,
    UpdateRejected,
    check_max_output_tokens,
    check_tools,
    envelope_decoder,
)

__all__ = [
    "CODE",
    "Refusal",
    "decode_refusal",
    "item_refusal",
    "missing_item",
    "override_message",
    "override_refusal",
    "response_refusal",
    "spec_override",
    "truncate_target",
]

#: the ``error`` code of a refused override
CODE = "override_not_allowed"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the ``error`` event's ``code``, ``message`` and ``param``."""

    code: str
    message: str
    param: str | None = None

    @classmethod
    def of(cls, rejected: UpdateRejected) -> Refusal:
        return cls(rejected.code, rejected.message, rejected.param)


def decode_refusal(text: str | bytes, reason: str) -> tuple[Refusal, str | None]:
    """The refusal of a message that failed to decode with msgspec's ``reason`` (an unknown
    ``type`` lists the known ones; a bad field is named by its path), and its ``event_id``."""
    try:
        envelope = envelope_decoder.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return Refusal("invalid_json", "the message is not a JSON object"), None
    event_id = envelope.event_id if isinstance(envelope.event_id, str) else None
    kind = envelope.type
    if not isinstance(kind, str) or kind not in CLIENT_EVENT_TYPES:
        known = ", ".join(CLIENT_EVENT_TYPES)
        message = f"Invalid value: {kind!r}. Supported values are: {known}."
        return Refusal("invalid_value", message, "type"), event_id
    message, _, where = reason.partition(" - at `$.")
    return Refusal("invalid_value", message, where.rstrip("`") or None), event_id


def response_refusal(params: ResponseParams, config: RealtimeSessionConfig) -> Refusal | None:
    """What is wrong with a response's own settings under the session ``config``."""
    if params.output_modalities is not None and len(set(params.output_modalities)) != 1:
        message = "output_modalities must be ['audio'] or ['text']"
        return Refusal("invalid_value", message, "response.output_modalities")
    try:
        tools = config.tools if params.tools is None else params.tools
        check_tools(tools, params.tool_choice, "response")
        check_max_output_tokens(params.max_output_tokens, "response.max_output_tokens")
        too_long = caps.instructions_problem(params.instructions, "response.instructions")
        if too_long is not None:
            raise UpdateRejected(*too_long, code=caps.TOO_LARGE)
    except UpdateRejected as rejected:
        return Refusal.of(rejected)
    for n, item in enumerate(params.input or ()):
        if (problem := item_problem(item)) is not None:
            param = f"response.input[{n}]{problem[0].removeprefix('item')}"
            return Refusal(problem[2], problem[1], param)
    return None


def item_refusal(event: ConversationItemCreate, items: Mapping[str, object]) -> Refusal | None:
    """What is wrong with an item to add to a conversation of ``items`` (by id)."""
    item = event.item
    problem = item_problem(item)
    if problem is not None:
        param, message, code = problem
        return Refusal(code, message, param)
    if item.id is not None and item.id in items:
        return Refusal("invalid_value", f"Item with id '{item.id}' already exists.", "item.id")
    previous = event.previous_item_id
    if previous not in (None, "root") and previous not in items:
        message = f"Error adding item: the previous item with id '{previous}' does not exist."
        return Refusal("invalid_value", message, "previous_item_id")
    return None


def missing_item(code: str, item_id: str) -> Refusal:
    """No item ``item_id``: OpenAI's ``code`` names the request (``item_*_invalid_item_id``)."""
    return Refusal(code, f"Item with item_id '{item_id}' not found", "item_id")


def truncate_target(
    event: ConversationItemTruncate,
    items: Mapping[str, object],
    audio_items: Mapping[str, tuple[int, OutboundAudio]],
) -> tuple[int, int] | Refusal:
    """The truncated reply's generation and its cut as a sample position (at the rate the
    session sent that reply's audio at); or why it cannot be truncated."""
    found = audio_items.get(event.item_id)
    if found is None:
        if event.item_id not in items:
            return missing_item("item_truncate_invalid_item_id", event.item_id)
        message = "only assistant messages with audio can be truncated"
        return Refusal("invalid_value", message, "item_id")
    generation, audio = found
    if event.content_index != 0:
        return Refusal("invalid_value", "the item has one content part", "content_index")
    sent_ms = samples_to_ms(audio.samples, audio.format.sample_rate)
    if not 0 <= event.audio_end_ms <= sent_ms:
        message = f"Audio content of {sent_ms}ms is already shorter than {event.audio_end_ms}ms"
        return Refusal("invalid_value", message, "audio_end_ms")
    rate = audio.source_rate or audio.format.sample_rate
    return generation, event.audio_end_ms * rate // 1000


# -- the override rule ----------------------------------------------------------------------


def override_message(param: str) -> str:
    return f"this API key may not override the agent's instructions or tools ({param})"


def spec_override(
    spec: SessionSpec, config: RealtimeSessionConfig, where: str = "session"
) -> str | None:
    """The param of ``spec`` that changes ``config``'s instructions or tools (``None``: none)."""
    if not isinstance(spec.instructions, UnsetType) and spec.instructions != config.instructions:
        return f"{where}.instructions"
    if not isinstance(spec.tools, UnsetType) and tuple(spec.tools) != config.tools:
        return f"{where}.tools"
    return None


def _system(item: Item) -> bool:
    return item.type == "message" and item.role == "system"


def override_refusal(event: Any, config: RealtimeSessionConfig) -> Refusal | None:
    """The refusal of client ``event`` when it would override the agent under ``config``."""
    param: str | None = None
    match event:
        case SessionUpdate(session=spec):
            param = spec_override(spec, config)
        case ResponseCreate(response=ResponseParams() as params):
            if params.instructions is not None and params.instructions != config.instructions:
                param = "response.instructions"
            elif params.tools is not None and tuple(params.tools) != config.tools:
                param = "response.tools"
            else:
                systems = (n for n, item in enumerate(params.input or ()) if _system(item))
                n = next(systems, None)
                param = None if n is None else f"response.input[{n}].role"
        case ConversationItemCreate(item=item) if _system(item):
            param = "item.role"
    return None if param is None else Refusal(CODE, override_message(param), param)
