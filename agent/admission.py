"""Who gets a call slot: sockets that are opening and calls that have started, counted apart.

A WebSocket holds an *opening* slot from its accept until its call starts (the native
``hello``, Twilio's ``start``, a Realtime socket at once) or it ends; ``server.max_opening``
bounds those, and ``server.open_timeout_s`` bounds how long each may wait. A *session* slot
(``server.max_sessions``) is taken only when the call starts: sockets that never say ``hello``
cannot lock out real calls. A call that starts with every session slot taken, or once the
server is draining (:mod:`agent.drain`), is closed with 1013 (try again later) before its
session runs.

**Admission by load.** A fixed ``max_sessions`` is right for one machine only: the same calls
cost a CPU without AVX-512 about five times the Whisper time (BENCHMARKS.md). So the server
also measures what its calls cost: the median time an utterance's final waited for the shared
Whisper model over the last :data:`LOAD_WINDOW_S` seconds (those still waiting count with their
age so far; :meth:`~pipeline.executor.ModelExecutor.queue_wait`). Finals go ahead of every
partial, so they wait only when the model cannot keep up with the calls it has; past
``server.max_asr_wait_ms`` a new call is refused as ``overloaded`` (the upgrade's 1013, 503 for
SIP and WebRTC, ``/health/ready`` 503 so a load balancer sends it elsewhere), and the calls
already open keep their turns instead of losing them to late finals. Because the wait lags
the calls, an overload also caps the calls at those open then, and the cap rises by one call
per quiet window (:class:`LoadCeiling`). Every transport asks
:meth:`agent.server.ServerState.refusal`, the one definition of who is refused and why.

:class:`Ticket` is one socket's claim; the endpoint opens it (:meth:`Slots.open`), the call
loop (:mod:`agent.ws_io`) turns it into a session slot (:meth:`Ticket.start`), and it is
closed when the socket ends, giving back whatever it holds. The ticket travels to the call
loop in the ASGI scope under :data:`SCOPE_KEY`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent.drain import Draining

__all__ = [
    "LOAD_WINDOW_S",
    "REFUSALS",
    "SCOPE_KEY",
    "Counts",
    "LoadCeiling",
    "Slots",
    "Ticket",
]

#: the scope key of a WebSocket's ticket
SCOPE_KEY = "voxline.ticket"
#: why a call was refused (:meth:`agent.server.ServerState.refusal`, :attr:`Ticket.refusal`),
#: as its 1013 close says it
REFUSALS = {
    "at_capacity": "server is at its session limit",
    "draining": "server is shutting down",
    "not_ready": "models are still loading",
    "overloaded": "server is overloaded: speech recognition is behind",
}
#: the seconds over which the ASR's queue wait is measured for ``server.max_asr_wait_ms``
LOAD_WINDOW_S = 10.0
#: an overload's ceiling, as a share of the calls open (:class:`LoadCeiling`)
DECREASE = 0.75


class Counts(Protocol):
    """What the server counts (:class:`agent.server.ServerState`)."""

    sessions: int
    opening: int
    #: the server is going away: no call starts
    draining: Draining


class Ticket:
    """One socket's claim: an opening slot, then (once started) a session slot."""

    def __init__(self, counts: Counts, max_sessions: int) -> None:
        self.counts = counts
        self.max_sessions = max_sessions
        self.state = "opening"  # "opening" | "session" | "closed"
        #: why :meth:`start` refused the call (a key of :data:`REFUSALS`; empty: it did not)
        self.refusal = ""

    def start(self) -> bool:
        """The call starts: a session slot for it, if one is free (the opening slot is
        given back either way). ``False``: the server is at its session limit, or draining."""
        if self.state != "opening":
            return self.state == "session"
        self.counts.opening -= 1
        if self.counts.draining.is_set():
            self.refusal = "draining"
        elif self.counts.sessions >= self.max_sessions:
            self.refusal = "at_capacity"
        if self.refusal:
            self.state = "closed"
            return False
        self.counts.sessions += 1
        self.state = "session"
        return True

    def close(self) -> None:
        """The socket has ended: whatever slot it holds is free."""
        if self.state == "opening":
            self.counts.opening -= 1
        elif self.state == "session":
            self.counts.sessions -= 1
        self.state = "closed"


class LoadCeiling:
    """Admission by load, sans-I/O: whether a new call may join, from the final's wait.

    The wait lags the calls: a call admitted now sends its first final seconds later (after
    the greeting), and once the calls behind an overload have ended, the last window's waits
    read as no load at all. Admitting on the wait alone let every caller refused meanwhile in
    at once (measured: 20 callers redialling every second were all let in within a second, and
    their finals then waited 6 s). So an overload also sets a *ceiling* on the calls open,
    additive-increase, multiplicative-decrease as TCP's congestion window: while the wait is
    past ``max_wait_s`` no call joins, and the ceiling becomes :data:`DECREASE` of the calls
    open (at most once per ``window_s``: the wait reflects a window; never below one call);
    once the wait is short again, calls join up to the ceiling, and each whole ``window_s``
    since it was last set raises it by one. ``None``: no overload seen, no ceiling.
    """

    def __init__(self, max_wait_s: float, window_s: float = LOAD_WINDOW_S) -> None:
        self.max_wait_s = max_wait_s
        self.window_s = window_s
        self.ceiling: int | None = None
        self._since = 0.0  # when the ceiling was last set or raised

    def admits(self, wait: float, sessions: int, now: float) -> bool:
        """May a call join the ``sessions`` open, with finals waiting ``wait`` s (at ``now``)?"""
        if wait > self.max_wait_s:
            if self.ceiling is None or now - self._since >= self.window_s:
                open_now = sessions if self.ceiling is None else min(sessions, self.ceiling)
                self.ceiling, self._since = max(1, int(open_now * DECREASE)), now
            return False
        if self.ceiling is None:
            return True
        windows = int((now - self._since) // self.window_s)
        if windows > 0:  # whole windows with the finals on time: a call more for each
            self.ceiling += windows
            self._since += windows * self.window_s
        return sessions < self.ceiling


class Slots:
    """A server's limits on opening sockets and started calls."""

    def __init__(self, counts: Counts, *, max_sessions: int, max_opening: int) -> None:
        self.counts = counts
        self.max_sessions = max_sessions
        self.max_opening = max_opening

    def open(self) -> Ticket | None:
        """A ticket for a new socket (``None``: ``max_opening`` sockets are opening)."""
        if self.counts.opening >= self.max_opening:
            return None
        self.counts.opening += 1
        return Ticket(self.counts, self.max_sessions)
