"""A circuit breaker, a restart backoff and a request deadline: how a failing or hung model
is noticed and left alone for a while.

Sans-I/O: nothing here reads a clock, sleeps or draws a random number. The caller passes the
time (any monotonic seconds) and the jitter; the engines that use them
(:class:`~voices.piper_engine.PiperEngine`, :class:`~voices.espeak_engine.EspeakEngine`,
:class:`~agent.dialogue.llm.LLMEngine`) own the threads, timers and locks.

:class:`Breaker` keeps one engine (or one LLM endpoint) from being asked again and again while
it keeps failing: every request asks :meth:`Breaker.admit` first, and reports how it ended
(:meth:`Breaker.succeeded`, :meth:`Breaker.failed`, or :meth:`Breaker.released` for the
probe when it ended with no verdict: cancelled by the caller). The rules, executed by
:meth:`Breaker._apply` as they stand here, first match wins:

====  =========  ========  =====================  =========  ================================
id    state      event     when                   then       why
====  =========  ========  =====================  =========  ================================
C1    closed     admit                            closed     every request goes through
C2    closed     success                          closed     the failures in a row start over
C3    closed     failure   below ``failures``     closed     counted
C4    closed     failure                          open       ``failures`` in a row: refuse
O1    open       admit     in the cool-down       open       refused at once (counted)
O2    open       admit                            half_open  after ``cooldown_s``: one probe
O3    open       success                          closed     a request let in before it opened
                                                             went through: the engine works
O4    open       failure                          open       (one let in before it opened)
H1    half_open  admit     a probe is out         half_open  one probe at a time: refused
H2    half_open  admit                            half_open  this request is the probe
H3    half_open  success                          closed     the probe went through
H4    half_open  failure                          open       the probe failed: a new cool-down
H5    half_open  release                          half_open  the probe ended unjudged: the
                                                             next request probes
R1    (other)    release                          (same)     nothing to release
====  =========  ========  =====================  =========  ================================

:func:`backoff_delay` is the delay before the ``n``-th restart of a crashed worker: exponential,
capped, jittered (between half and all of it), so restarts of many processes do not line up.

:class:`Deadline` is how long a request to a model process may take before it counts as hung
(and the process is killed): a fixed part plus a part in proportion to the work asked for
(seconds of speech to make), so a long sentence is not cut and a hung one is noticed soon.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "RULES",
    "Breaker",
    "BreakerState",
    "BreakerStatistics",
    "Deadline",
    "Rule",
    "backoff_delay",
]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def level(self) -> int:
        """As a gauge: 0 closed, 1 half open, 2 open."""
        return {"closed": 0, "half_open": 1, "open": 2}[self.value]


BreakerEvent = Literal["admit", "success", "failure", "release"]
Guard = Callable[["Breaker", float], bool]


def _below_threshold(breaker: Breaker, now: float) -> bool:
    return breaker._failures + 1 < breaker.failures


def _cooling(breaker: Breaker, now: float) -> bool:
    return now < breaker._opened_at + breaker.cooldown_s


def _probing(breaker: Breaker, now: float) -> bool:
    return breaker._probing


Effect = Literal["admit", "refuse", "reset", "count", "open", "probe", "unprobe", "none"]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    state: BreakerState | None  # None: any state
    event: BreakerEvent
    guard: Guard | None
    then: BreakerState | None  # None: the same state
    effect: Effect


_C, _O, _H = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

#: the table of the module docstring, as the code runs it
RULES: tuple[Rule, ...] = (
    Rule("C1", _C, "admit", None, _C, "admit"),
    Rule("C2", _C, "success", None, _C, "reset"),
    Rule("C3", _C, "failure", _below_threshold, _C, "count"),
    Rule("C4", _C, "failure", None, _O, "open"),
    Rule("O1", _O, "admit", _cooling, _O, "refuse"),
    Rule("O2", _O, "admit", None, _H, "probe"),
    Rule("O3", _O, "success", None, _C, "reset"),
    Rule("O4", _O, "failure", None, _O, "none"),
    Rule("H1", _H, "admit", _probing, _H, "refuse"),
    Rule("H2", _H, "admit", None, _H, "probe"),
    Rule("H3", _H, "success", None, _C, "reset"),
    Rule("H4", _H, "failure", None, _O, "open"),
    Rule("H5", _H, "release", None, _H, "unprobe"),
    Rule("R1", None, "release", None, None, "none"),
)


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    name: str
    state: BreakerState
    #: failures in a row now (reset by a success)
    failures_in_a_row: int
    #: times it opened (closed or half open to open)
    opened: int
    #: requests refused at once because it was open
    refused: int


class Breaker:
    """A circuit breaker for ``name``: open after ``failures`` failures in a row, one probe
    after ``cooldown_s``; see the module docstring. Not thread-safe: the owner locks."""

    def __init__(self, name: str, *, failures: int = 5, cooldown_s: float = 10.0) -> None:
        if failures < 1 or cooldown_s < 0:
            raise ValueError("a breaker needs at least 1 failure and a cool-down of 0 s or more")
        self.name = name
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.state = BreakerState.CLOSED
        #: the rule that made the last decision (for tests and logs)
        self.last_rule = ""
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._opened = 0
        self._refused = 0

    def admit(self, now: float) -> bool:
        """May a request go now? A refusal is counted; an admission in ``half_open`` is the
        probe (its end must be reported, or :meth:`released`)."""
        return self._apply("admit", now) != "refuse"

    def succeeded(self, now: float) -> None:
        self._apply("success", now)

    def failed(self, now: float) -> None:
        self._apply("failure", now)

    def released(self, now: float) -> None:
        """The probe ended with no verdict (the caller cancelled it)."""
        self._apply("release", now)

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_s - now)

    def refusal(self, now: float) -> str:
        """Why a request is refused now (after :meth:`admit` said no), for its error."""
        return (
            f"failed {self.failures} times in a row (circuit breaker open, next try in "
            f"{self.retry_in(now):.1f} s)"
        )

    def statistics(self) -> BreakerStatistics:
        return BreakerStatistics(self.name, self.state, self._failures, self._opened, self._refused)

    def _apply(self, event: BreakerEvent, now: float) -> Effect:
        rule = next(
            r
            for r in RULES
            if r.event == event
            and r.state in (None, self.state)
            and (r.guard is None or r.guard(self, now))
        )
        self.last_rule = rule.id
        match rule.effect:
            case "refuse":
                self._refused += 1
            case "reset":
                self._failures = 0
                self._probing = False
            case "count":
                self._failures += 1
            case "open":
                self._failures += 1
                self._opened += 1
                self._opened_at = now
                self._probing = False
            case "probe":
                self._probing = True
            case "unprobe":
                self._probing = False
        if rule.then is not None:
            self.state = rule.then
        return rule.effect


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, jitter: float) -> float:
    """The delay before retry ``attempt`` (0 for the first): ``base_s`` x 2^attempt, at most
    ``cap_s``, then between half and all of it as ``jitter`` goes from 0 to 1."""
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be in [0, 1]")
    full = min(cap_s, base_s * 2.0 ** min(attempt, 62))
    return full * (0.5 + jitter / 2)


@dataclass(frozen=True, slots=True)
class Deadline:
    """A request's time budget: ``base_s`` plus ``per_second`` times the seconds of work it
    asks for (:meth:`budget`)."""

    base_s: float = 2.0
    per_second: float = 0.5

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.per_second < 0:
            raise ValueError("a deadline needs a base over 0 s and a per-second part of 0 or more")

    def budget(self, work_s: float) -> float:
        """Seconds a request for ``work_s`` seconds of work may take."""
        return self.base_s + self.per_second * max(0.0, work_s)
