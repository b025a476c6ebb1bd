"""Realtime clients whose key may not replace the agent's instructions and tools.

A key granted ``overrides=no`` (:mod:`agent.grants`; a client secret it minted too) keeps the
agent's own prompt and tools: its client may not

- set ``session.instructions`` or ``session.tools`` to anything but what the session has
  (``session.update``, the ``session`` of a client secret or of a WebRTC offer),
- give a response instructions or tools of its own (``response.instructions``,
  ``response.tools``),
- add a ``system`` message to the conversation (``conversation.item.create``,
  ``response.input``).

Each is refused whole with an ``invalid_request_error`` (code ``override_not_allowed``) naming
the param; the session goes on as it was. Sending the session's own values back (as a client
that echoes ``session.created`` does) is no override.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import msgspec
from msgspec import UnsetType

from agent.grants import Grants, caller_of
from transports.realtime import RealtimeProtocol, RealtimeState
from transports.realtime_events import (
    ConversationItemCreate,
    Item,
    RealtimeSessionConfig,
    ResponseCreate,
    SessionSpec,
    SessionUpdate,
    client_event_decoder,
)
from transports.realtime_inbound import RealtimeEvent

__all__ = [
    "CODE",
    "LockedProtocol",
    "override_message",
    "protocol_for",
    "realtime_protocol",
    "refused_override",
    "spec_override",
]

#: the ``error`` code of a refused override
CODE = "override_not_allowed"
#: the events that may carry an override (the others are not decoded twice)
_CARRIERS = frozenset({"session.update", "response.create", "conversation.item.create"})


class _Type(msgspec.Struct):
    type: Any = None


_type_decoder = msgspec.json.Decoder(_Type)


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


def refused_override(event: object, config: RealtimeSessionConfig) -> str | None:
    """The param by which client ``event`` would override the agent (``None``: it does not)."""
    match event:
        case SessionUpdate(session=spec):
            return spec_override(spec, config)
        case ResponseCreate(response=params) if params is not None:
            if params.instructions is not None and params.instructions != config.instructions:
                return "response.instructions"
            if params.tools is not None and tuple(params.tools) != config.tools:
                return "response.tools"
            for n, item in enumerate(params.input or ()):
                if _system(item):
                    return f"response.input[{n}].role"
        case ConversationItemCreate(item=item) if _system(item):
            return "item.role"
    return None


class LockedProtocol(RealtimeProtocol):
    """:class:`RealtimeProtocol` for a client that may not override (see the module)."""

    def receive_text(self, text: str | bytes) -> list[RealtimeEvent]:
        if self.state is RealtimeState.OPEN and len(text) <= self.max_message_chars:
            try:
                kind = _type_decoder.decode(text).type
                carrier = isinstance(kind, str) and kind in _CARRIERS  # a dict: unhashable
                event = client_event_decoder.decode(text) if carrier else None  # (bench/fuzz)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                event = None  # the protocol says what is wrong with it (too deep: bench/fuzz)
            param = refused_override(event, self.config)
            if param is not None:
                event_id = getattr(event, "event_id", None)
                return self._error(CODE, override_message(param), param=param, event_id=event_id)
        return super().receive_text(text)


def protocol_for(grants: Grants) -> type[RealtimeProtocol]:
    """The protocol for a Realtime call with ``grants``: one that refuses overrides when they
    do not allow them."""
    return RealtimeProtocol if grants.overrides else LockedProtocol


def realtime_protocol(scope: MutableMapping[str, Any]) -> type[RealtimeProtocol]:
    """:func:`protocol_for` the caller of the request ``scope``."""
    return protocol_for(caller_of(scope).grants)
