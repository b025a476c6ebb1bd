"""One call's spans as it happens: a plain class fed what the session says (sans-I/O).

:class:`CallSpans` never awaits, never reads a clock and knows nothing of OpenTelemetry: each
input carries its time (the session clock's seconds), caller audio positions (16 kHz samples)
are turned into times by the function it is given, and :meth:`CallSpans.take` drains what is
finished: turns (:class:`TurnSpan`) and the call's own events (:class:`CallEvent`), which
:mod:`agent.tracing` turns into spans. The shape (docs/config.md "Traces")::

    call                          the call, from its session's start to its end
    │                             (its span and attributes: agent.tracing; events: below)
    └─ turn                       a caller's turn, from their speech's start to the end of
       │                          the answer's audio (played out or cleared)
       └─ speech_end->asr_final   one child span per stage of the answer's latency
          asr_final->end_of_turn  (the session's TurnLatency, the same stages as the
          ...                     voxline_turn_stage_seconds histogram), with their real
          first_audio->audio_out  start and end: the chain ends at the answer's first audio

What each input does:

======================  ===================================================================
``UserTurn``            a turn opens (turn numbers count from 1); a turn still waiting for
                        its answer ends there
``AgentText``           the open turn's answer is the first generation newer than any seen
                        before the turn began (an old reply's late events answer nothing)
audio                   the first audio of each generation is noted
``TurnLatency``         the stages of the turn its generation answers, anchored at that
                        generation's first audio (else at the event's time)
audio ended or cleared  the turn its generation answers ends
``Interrupted``         a ``barge_in`` event on the call; the turn of that reply ends,
                        marked interrupted
``CallEnded``           the end reason
:meth:`CallSpans.close` every turn still open ends
======================  ===================================================================

No text (transcripts, replies) goes into a span: only numbers, rule ids and the call id. A call
keeps at most :data:`MAX_OPEN` turns open (the oldest is ended beyond it), so its memory stays
bounded however long it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from agent.session_events import (
    AgentText,
    CallEnded,
    Interrupted,
    SessionEvent,
    TurnLatency,
    UserTurn,
)

__all__ = ["MAX_OPEN", "Attributes", "CallEvent", "CallSpans", "Stage", "TurnSpan"]

#: turns a call keeps open at most (one waits for its answer, a few answers still play)
MAX_OPEN = 8

Attributes = dict[str, str | bool | int | float]


@dataclass(frozen=True)
class Stage:
    """One stage of a turn's latency, ``start``-``end`` (session clock seconds)."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class CallEvent:
    """Something that happened to the call at ``at``: an event of its span."""

    name: str
    at: float
    attributes: Attributes


@dataclass
class TurnSpan:
    """A caller's turn and its answer (see the module doc)."""

    number: int
    start: float
    #: the newest generation seen before it began: its answer is a newer one
    after: int
    end: float | None = None
    rule: str = ""
    keypad: bool = False
    generation: int | None = None
    interrupted: bool = False
    latency_ms: dict[str, float] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)

    def attributes(self) -> Attributes:
        out: Attributes = {
            "voxline.turn.number": self.number,
            "voxline.turn.rule": self.rule,
            "voxline.turn.keypad": self.keypad,
            "voxline.reply.interrupted": self.interrupted,
        }
        if self.generation is not None:
            out["voxline.generation"] = self.generation
        for stage, ms in self.latency_ms.items():
            out[f"voxline.latency_ms.{stage}"] = ms
        return out


@dataclass
class CallSpans:
    """Builds one call's turns and events (see the module doc); ``caller_time``: the session
    clock's time at which caller audio sample N arrived."""

    caller_time: Callable[[int], float]
    #: the session's end reason, once it said one
    reason: str | None = None
    #: turns opened so far
    turns: int = 0
    _open: list[TurnSpan] = field(default_factory=list)
    _newest: int = 0
    _first_audio: dict[int, float] = field(default_factory=dict)
    _done: list[TurnSpan | CallEvent] = field(default_factory=list)

    def event(self, event: SessionEvent, at: float) -> None:
        """What the session told its transport, at ``at``."""
        match event:
            case UserTurn(start=start, rule=rule, keypad=keypad):
                for waiting in [t for t in self._open if t.generation is None]:
                    self._end(waiting, at)
                self.turns += 1
                begun = min(self.caller_time(start), at)
                self._open.append(
                    TurnSpan(self.turns, begun, self._newest, rule=rule, keypad=keypad)
                )
                if len(self._open) > MAX_OPEN:
                    self._end(self._open[0], at)
            case AgentText(generation=generation):
                self._seen(generation)
            case TurnLatency(generation=generation, stages=stages):
                self._seen(generation)
                if (answered := self._turn_of(generation)) is not None:
                    answered.latency_ms = dict(stages)
                    out = self._first_audio.get(generation, at)
                    answered.stages = _stages(stages, out)
            case Interrupted(generation=generation, played_ms=played_ms, rule=rule):
                attributes: Attributes = {
                    "voxline.generation": generation,
                    "voxline.played_ms": played_ms,
                    "voxline.rule": rule,
                }
                self._done.append(CallEvent("barge_in", at, attributes))
                if (turn := self._turn_of(generation)) is not None:
                    turn.interrupted = True
                    self._end(turn, at)
            case CallEnded(reason=reason):
                self.reason = self.reason or reason
            case _:
                pass

    def audio(self, generation: int, at: float) -> None:
        """Reply ``generation``'s audio is going out. (Audio reaches the sink beside the
        events, not behind them: only events tell which turn a generation answers.)"""
        if generation not in self._first_audio:
            self._first_audio[generation] = at
            if len(self._first_audio) > 2 * MAX_OPEN:
                del self._first_audio[min(self._first_audio)]

    def audio_ended(self, generation: int, at: float) -> None:
        """Reply ``generation``'s audio is complete, or was cleared (a barge-in)."""
        if (turn := self._turn_of(generation)) is not None:
            self._end(turn, at)

    def take(self) -> list[TurnSpan | CallEvent]:
        """What has finished since the last call, in order."""
        done, self._done = self._done, []
        return done

    def close(self, at: float) -> list[TurnSpan | CallEvent]:
        """The call is over: every turn still open ends at ``at``; what has finished."""
        for turn in list(self._open):
            self._end(turn, at)
        return self.take()

    def _seen(self, generation: int) -> None:
        """A generation's event: the newest turn waiting for an answer gets it, if new."""
        if generation > self._newest:
            self._newest = generation
            waiting = self._open[-1] if self._open else None
            if waiting is not None and waiting.generation is None and generation > waiting.after:
                waiting.generation = generation

    def _turn_of(self, generation: int) -> TurnSpan | None:
        return next((t for t in self._open if t.generation == generation), None)

    def _end(self, turn: TurnSpan, at: float) -> None:
        self._open.remove(turn)
        turn.end = max(at, turn.start)
        self._done.append(turn)


def _stages(stages: dict[str, float], out: float) -> list[Stage]:
    """The stages (``a->b`` in milliseconds, in order, and ``total``) as spans of time ending
    at ``out``, the answer's first audio."""
    steps = [(name, ms / 1000) for name, ms in stages.items() if "->" in name]
    total = stages.get("total", 1000 * sum(s for _, s in steps)) / 1000
    at, spans = out - total, []
    for name, seconds in steps:
        start, end = sorted((at, at + seconds))  # a stage may be negative (a speculative final)
        spans.append(Stage(name, start, end))
        at += seconds
    return spans
