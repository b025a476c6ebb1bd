"""A call's record, as it is stored and served (``GET /v1/calls``), and the queries on them.

Times: ``started_at`` and ``ended_at`` are UTC; everything inside a call (its lines, tool calls,
notices) is in seconds since ``started_at`` on the server's monotonic clock.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Literal

import msgspec

__all__ = [
    "CallPage",
    "CallQuery",
    "CallRecord",
    "Line",
    "Note",
    "ToolUse",
    "decode_cursor",
    "encode_cursor",
]

#: the most calls one page of ``GET /v1/calls`` holds
MAX_PAGE = 100


class Line(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one side said: a caller's turn, or one reply of the agent (a generation).

    ``start_s``/``end_s``: a caller's turn from the first to the last of its audio; a reply
    from its first text or audio to the end of its audio (``None``: it never ended, the call
    did first). A reply the caller cut off (``interrupted``) or that the client truncated has
    ``heard``, the text the caller actually heard, and ``played_ms`` of its audio played.
    ``latency_ms``: the reply's latency by stage, from the end of the caller's speech.
    """

    speaker: Literal["caller", "agent"]
    text: str
    start_s: float
    end_s: float | None = None
    #: a caller's turn: the turn-taking rule that ended it; keyed in (DTMF), not spoken
    rule: str = ""
    keypad: bool = False
    #: an agent's reply
    generation: int | None = None
    interrupted: bool = False
    heard: str | None = None
    played_ms: float | None = None
    #: the rule that interrupted it (``""``: the client asked)
    interrupted_by: str = ""
    latency_ms: dict[str, float] | None = None


class ToolUse(msgspec.Struct, frozen=True, kw_only=True):
    """A tool the LLM called and what it returned; ``at_s``: when the record first saw it."""

    id: str
    name: str
    arguments: str
    result: str | None = None
    at_s: float


class Note(msgspec.Struct, frozen=True, kw_only=True):
    """Something else that happened: a notice the client got (``notice.CODE``), a transfer
    asked for (``transfer``: ``detail`` is the target)."""

    kind: str
    detail: str = ""
    at_s: float


class CallRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One call, from its start to its end."""

    id: str
    agent: str
    #: ``native``, ``realtime``, ``twilio``, ``webrtc``, ``sip``
    transport: str
    started_at: dt.datetime
    ended_at: dt.datetime
    #: the session's reason (``caller said goodbye``, ``max_turns``, ``transferred``,
    #: ``server_shutdown`` ...), ``hangup`` when the caller's side ended it, ``error`` when
    #: the call failed
    end_reason: str
    lines: list[Line] = msgspec.field(default_factory=list)
    tools: list[ToolUse] = msgspec.field(default_factory=list)
    notes: list[Note] = msgspec.field(default_factory=list)
    #: lines, tool calls or notes beyond the bound of one record were not kept
    truncated: bool = False
    #: the call's stereo WAV in ``server.records.recording_dir`` (the caller left, the agent
    #: right), served at ``GET /v1/calls/{id}/recording``; ``None``: it was not recorded
    recording: str | None = None


class CallQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A page of calls, newest first: those that match every filter given, after ``cursor``."""

    agent: str | None = None
    transport: str | None = None
    #: started at or after (unix seconds)
    since: float | None = None
    #: started before (unix seconds)
    until: float | None = None
    limit: int = 20
    #: where the previous page ended (its ``next_cursor``)
    after: tuple[float, str] | None = None


class CallPage(msgspec.Struct, frozen=True, kw_only=True):
    data: list[CallRecord]
    has_more: bool
    #: give it back as ``cursor`` for the next page (``None``: this is the last)
    next_cursor: str | None
    object: str = "list"


def encode_cursor(started_at: float, call_id: str) -> str:
    """An opaque cursor: where a page ended (the last call's start and id)."""
    raw = msgspec.json.encode([started_at, call_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position :func:`encode_cursor` wrote; ``ValueError`` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_at, call_id = msgspec.json.decode(raw, type=tuple[float, str])
    except (binascii.Error, msgspec.DecodeError, ValueError):
        raise ValueError("not a cursor from this API") from None
    return started_at, call_id
