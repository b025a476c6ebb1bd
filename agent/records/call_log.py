"""One call's record as it happens: a plain class fed what the session says (sans-I/O).

:class:`CallLog` never awaits and never reads a clock: each input carries its time (seconds
since the call started), and caller audio positions (16 kHz samples) are turned into times by
the function it is given. What it keeps from each event:

=====================  =======================================================================
``UserTurn``           a caller line: its text, the audio it spans, the rule that ended it
``AgentText``          the reply's line (opened at its first text), the text appended
audio of a reply       the line starts at its first audio; its end (or a clear) ends the line
``Interrupted``        the line is ``interrupted``, with what was ``heard`` and ``played_ms``
``ReplyTruncated``     the line's ``heard`` (the client played only that much)
``TurnLatency``        the line's ``latency_ms``
``TransferRequested``  a note ``transfer`` (the target)
``Notice``             a note ``notice.CODE`` (its message)
``CallEnded``          the end reason
tool calls             :meth:`CallLog.tool` (each id once)
=====================  =======================================================================

Partial transcripts, speech start/stop, marks and audio frames are not kept. A record holds at
most :data:`MAX_ITEMS` lines, tool calls and notes each (a call's memory stays bounded; beyond
it, ``truncated``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.records.model import CallRecord, Line, Note, ToolUse
from agent.session_events import (
    AgentText,
    CallEnded,
    Interrupted,
    Notice,
    ReplyTruncated,
    SessionEvent,
    TransferRequested,
    TurnLatency,
    UserTurn,
)

__all__ = ["MAX_ITEMS", "CallLog"]

#: lines, tool calls and notes a record holds, each
MAX_ITEMS = 2000
#: characters of one line's text kept (a reply is bounded by ``limits.max_reply_chars`` anyway)
MAX_TEXT = 20_000


@dataclass
class _Reply:
    """An agent line being written."""

    generation: int
    #: when its first text or audio came, and its first audio
    start_s: float
    audio_s: float | None = None
    text: str = ""
    end_s: float | None = None
    interrupted: bool = False
    heard: str | None = None
    played_ms: float | None = None
    interrupted_by: str = ""
    latency_ms: dict[str, float] | None = None

    def line(self) -> Line:
        return Line(
            speaker="agent",
            text=self.text,
            start_s=self.audio_s if self.audio_s is not None else self.start_s,
            end_s=self.end_s,
            generation=self.generation,
            interrupted=self.interrupted,
            heard=self.heard,
            played_ms=self.played_ms,
            interrupted_by=self.interrupted_by,
            latency_ms=self.latency_ms,
        )


@dataclass
class CallLog:
    """Builds the record of call ``call_id`` (see the module doc).

    ``started_at``: the call's start (UTC); ``caller_time``: seconds since the start at which
    caller audio sample N arrived.
    """

    call_id: str
    agent: str
    transport: str
    started_at: dt.datetime
    caller_time: Callable[[int], float]
    #: the session's end reason, once it said one
    reason: str | None = None
    truncated: bool = False
    _lines: list[Line | _Reply] = field(default_factory=list)
    _replies: dict[int, _Reply] = field(default_factory=dict)
    _tools: dict[str, ToolUse] = field(default_factory=dict)
    _notes: list[Note] = field(default_factory=list)

    def event(self, event: SessionEvent, at: float) -> None:
        """What the session told its transport, ``at`` seconds into the call."""
        match event:
            case UserTurn(text=text, start=start, end=end, rule=rule, keypad=keypad):
                start_s, end_s = self.caller_time(start), self.caller_time(end)
                line = Line(
                    speaker="caller",
                    text=text[:MAX_TEXT],
                    start_s=round(min(start_s, end_s), 3),
                    end_s=round(end_s, 3),
                    rule=rule,
                    keypad=keypad,
                )
                self._add(line)
            case AgentText(generation=generation, delta=delta):
                reply = self._reply(generation, at)
                if reply is not None and len(reply.text) < MAX_TEXT:
                    reply.text += delta[: MAX_TEXT - len(reply.text)]
            case Interrupted(generation=g, heard_text=heard, played_ms=played, rule=rule):
                if (reply := self._reply(g, at)) is not None:
                    reply.interrupted, reply.heard, reply.played_ms = True, heard, played
                    reply.interrupted_by = rule
                    reply.end_s = reply.end_s if reply.end_s is not None else round(at, 3)
            case ReplyTruncated(generation=generation, heard_text=heard):
                if (reply := self._reply(generation, at)) is not None:
                    reply.heard = heard
            case TurnLatency(generation=generation, stages=stages):
                if (reply := self._reply(generation, at)) is not None:
                    reply.latency_ms = {stage: round(ms, 1) for stage, ms in stages.items()}
            case TransferRequested(target=target):
                self._note(Note(kind="transfer", detail=target, at_s=round(at, 3)))
            case Notice(code=code, message=message):
                self._note(Note(kind=f"notice.{code}", detail=message, at_s=round(at, 3)))
            case CallEnded(reason=reason):
                self.reason = self.reason or reason
            case _:
                pass

    def audio(self, generation: int, at: float) -> None:
        """Reply ``generation``'s audio is going out (its line opens if no text came first):
        the line starts at its first audio."""
        reply = self._reply(generation, at)
        if reply is not None and reply.audio_s is None:
            reply.audio_s = round(at, 3)

    def audio_ended(self, generation: int, at: float) -> None:
        """Reply ``generation``'s audio is complete, or was cleared (a barge-in)."""
        reply = self._replies.get(generation)
        if reply is not None and reply.end_s is None:
            reply.end_s = round(at, 3)

    def tool(self, call_id: str, name: str, arguments: str, result: str | None, at: float) -> None:
        """A tool call seen (the first sighting of each id counts; a later one with its
        result fills it in)."""
        seen = self._tools.get(call_id)
        if seen is None:
            if len(self._tools) >= MAX_ITEMS:
                self.truncated = True
                return
            use = ToolUse(id=call_id, name=name, arguments=arguments, result=result, at_s=at)
            self._tools[call_id] = use
        elif seen.result is None and result is not None:
            self._tools[call_id] = ToolUse(
                id=call_id, name=name, arguments=seen.arguments, result=result, at_s=seen.at_s
            )

    def record(self, ended_at: dt.datetime, reason: str) -> CallRecord:
        """The record, as of now; ``reason``: the end reason if the session gave none."""
        lines = [item.line() if isinstance(item, _Reply) else item for item in self._lines]
        lines.sort(key=lambda line: line.start_s)  # a barge-in's turn began inside the reply
        return CallRecord(
            id=self.call_id,
            agent=self.agent,
            transport=self.transport,
            started_at=self.started_at,
            ended_at=ended_at,
            end_reason=self.reason or reason,
            lines=lines,
            tools=list(self._tools.values()),
            notes=list(self._notes),
            truncated=self.truncated,
        )

    def _reply(self, generation: int, at: float) -> _Reply | None:
        reply = self._replies.get(generation)
        if reply is None:
            reply = _Reply(generation, round(at, 3))
            if not self._add(reply):
                return None
            self._replies[generation] = reply
        return reply

    def _add(self, item: Line | _Reply) -> bool:
        if len(self._lines) >= MAX_ITEMS:
            self.truncated = True
            return False
        self._lines.append(item)
        return True

    def _note(self, note: Note) -> None:
        if len(self._notes) >= MAX_ITEMS:
            self.truncated = True
            return
        self._notes.append(note)
