"""Graceful drain: how a server goes away (a rolling update) without cutting calls.

On SIGTERM or SIGINT, :class:`DrainingServer` (uvicorn's server, whose own handling would
close every WebSocket at once) only starts the drain: :attr:`Draining.started` is set, and
every admission path refuses new calls from then on, each in its protocol's words:

==============================  ===========================================================
``GET /health/ready``           503 with ``"draining": true`` (a load balancer stops routing)
a WebSocket call                closed with 1013 "server is shutting down" at its accept
                                (one still opening: 1013 at its ``hello``/``start``)
``POST /v1/webrtc/offer``       503 ``draining`` (``Retry-After``)
a SIP INVITE                    503 (``Retry-After``)
==============================  ===========================================================

:func:`drain` (a task of the app's lifespan) then

1. waits until no call holds a session slot, ``server.drain_timeout_s`` at most: a call that
   ends within that deadline is never cut;
2. at the deadline, each call still running (:data:`agent.call_loop.RUNNING`: every
   transport's) hears ``server.drain_message`` (a reply, which stops the one being spoken)
   and is hung up once it has played (:meth:`~agent.session_control.CallControls.farewell`):
   ``session.ended`` with reason ``server_shutdown`` (native), the socket closed with 1000
   ``server_shutdown`` (Realtime, Twilio), a BYE (SIP), the call ended (WebRTC);
3. waits :data:`GOODBYE_S` at most for them to end (a caller who talks over the goodbye stops
   it), then ends the rest without words (``end_call``) and waits :data:`HANG_UP_S` more;
4. sets :attr:`Draining.done`: the server stops (uvicorn's shutdown closes the listening
   socket and what connections are left, then the lifespan ends the WebRTC and SIP servers
   and releases the models), and the process exits 0.

A second signal stops at once (uvicorn's shutdown, without the drain); a second SIGINT
(Ctrl+C twice) does not even wait for the connections, as uvicorn's own does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

import anyio
import uvicorn

from agent.call_loop import RUNNING

__all__ = ["GOODBYE_S", "HANG_UP_S", "REASON", "Call", "Draining", "DrainingServer", "drain"]

log = logging.getLogger("voxline.server")

#: the end reason of a call the drain hangs up
REASON = "server_shutdown"
#: seconds the calls have, after the drain deadline, to say the goodbye and hang up
GOODBYE_S = 15.0
#: seconds the calls still running then have to close, once they are ended without words
HANG_UP_S = 3.0


@dataclass
class Draining:
    """A server's drain, as admission and the lifespan see it (``ServerState.draining``)."""

    #: set at SIGTERM/SIGINT: no new call is taken from then on
    started: anyio.Event = field(default_factory=anyio.Event)
    #: set once the calls are gone (or the last deadline has passed): the server stops
    done: anyio.Event = field(default_factory=anyio.Event)

    def is_set(self) -> bool:
        """The drain has started (no new call)."""
        return self.started.is_set()


class SessionCount(Protocol):
    """What :func:`drain` waits on (:class:`agent.server.ServerState`)."""

    draining: Draining

    @property
    def sessions(self) -> int: ...

    async def wait_for_no_sessions(self) -> None: ...


class Call(Protocol):
    """What :func:`drain` asks of a running call (a :class:`~agent.session.Session`)."""

    async def farewell(self, text: str, reason: str) -> None: ...

    async def end_call(self, reason: str) -> None: ...


async def drain(
    state: SessionCount,
    deadline_s: float,
    message: str,
    calls: Iterable[Call] = RUNNING,
    *,
    goodbye_s: float = GOODBYE_S,
    hang_up_s: float = HANG_UP_S,
) -> None:
    """Once the drain has started: wait for the calls to end, ``deadline_s`` seconds at most,
    then tell ``calls`` (``message``) and hang up (``goodbye_s``, ``hang_up_s``: the module
    doc); set ``state.draining.done`` at the end."""
    await state.draining.started.wait()
    log.info("draining: %d call(s) in progress, %g s to end", state.sessions, deadline_s)
    with anyio.move_on_after(deadline_s):
        await state.wait_for_no_sessions()
    if state.sessions:
        log.info("drain deadline: %d call(s) hear the goodbye", state.sessions)
        with anyio.move_on_after(goodbye_s):  # a call too busy to be told cannot hold it up
            for call in list(calls):
                await call.farewell(message, REASON)
            await state.wait_for_no_sessions()
    if state.sessions:
        log.warning("drain: %d call(s) did not end after the goodbye: ended", state.sessions)
        with anyio.move_on_after(hang_up_s):
            for call in list(calls):
                await call.end_call(REASON)
            await state.wait_for_no_sessions()
    log.info("drained: stopping")
    state.draining.done.set()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but a signal starts the drain instead of the shutdown, and the
    shutdown comes once the drain is done (uvicorn's ``on_tick`` looks every 0.1 s)."""

    def __init__(self, config: uvicorn.Config, draining: Draining) -> None:
        super().__init__(config)
        self.draining = draining
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded in ``_captured_signals``: uvicorn would raise it again once stopped,
        # and the process would die of it instead of exiting 0.
        if self.draining.is_set() or self._loop is None or not self.started:
            if self.draining.is_set() and sig == signal.SIGINT:
                self.force_exit = True  # Ctrl+C twice: now
            self.should_exit = True  # still starting up, or asked twice: stop at once
            return
        self._loop.call_soon_threadsafe(self._start, signal.Signals(sig).name)

    def _start(self, signal_name: str) -> None:
        self.draining.started.set()
        log.info("%s: draining (no new calls)", signal_name)

    async def on_tick(self, counter: int) -> bool:
        return await super().on_tick(counter) or self.draining.done.is_set()
