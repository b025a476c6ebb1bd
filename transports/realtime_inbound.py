"""What the Realtime protocol hands the session (``/v1/realtime``): the events
:meth:`RealtimeProtocol.receive_text <transports.realtime.RealtimeProtocol.receive_text>`
returns, one for each client request the session acts on (the table at the top of
:mod:`transports.realtime` says which client event makes which).

They are the contract between the sans-I/O protocol and its adapter
(:mod:`agent.realtime_call`), apart from the machine that makes them. Sans-I/O.
"""

from __future__ import annotations

import msgspec

from pipeline.events import AudioFrame
from transports.errors import PeerError
from transports.realtime_events import Item, RealtimeSessionConfig, ResponseParams

__all__ = [
    "CancelRequested",
    "CommitRequested",
    "InputCleared",
    "ItemCreated",
    "ItemDeleted",
    "RealtimeEvent",
    "ResponseRequested",
    "SessionUpdated",
    "TruncateRequested",
]


class SessionUpdated(msgspec.Struct, frozen=True):
    """The session changed (``session.updated`` is queued): apply ``config``."""

    config: RealtimeSessionConfig


class CommitRequested(msgspec.Struct, frozen=True):
    """The client committed its input: end the user's turn; its item is ``item_id``."""

    item_id: str


class InputCleared(msgspec.Struct, frozen=True):
    """The client dropped the input not yet committed: discard the open user turn."""


class ItemCreated(msgspec.Struct, frozen=True):
    """The client added ``item`` (its id is set) to the conversation after ``previous_item_id``."""

    item: Item
    previous_item_id: str | None


class ItemDeleted(msgspec.Struct, frozen=True):
    """The client deleted item ``item_id``: a function call's ``call_id``, and the reply
    (generation) whose response made it, if one did."""

    item_id: str
    call_id: str | None = None
    made_by: int | None = None


class TruncateRequested(msgspec.Struct, frozen=True):
    """The listener heard ``generation``'s audio up to ``samples`` (at the rate it was sent)."""

    item_id: str
    generation: int
    audio_end_ms: int
    samples: int


class ResponseRequested(msgspec.Struct, frozen=True):
    """Start a reply: call :meth:`RealtimeProtocol.start_response` with its generation."""

    params: ResponseParams


class CancelRequested(msgspec.Struct, frozen=True):
    """Cancel ``generation``'s work; the protocol has already ended its response."""

    generation: int
    response_id: str
    clear_audio: bool = False


RealtimeEvent = (
    SessionUpdated
    | AudioFrame
    | CommitRequested
    | InputCleared
    | ItemCreated
    | ItemDeleted
    | TruncateRequested
    | ResponseRequested
    | CancelRequested
    | PeerError
)
