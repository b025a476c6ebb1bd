"""One call, one task group: the shape every transport's call takes.

A transport adapter is a :class:`CallConnection`, and :func:`run_call` runs it in three phases:

1. **begin**, before the session exists: what the protocol needs before its call starts. A
   WebSocket reads until its protocol starts the call (the native ``hello``, Twilio's
   ``start``; Realtime starts at once and sends ``session.created``) and sends what the
   protocol queues itself, under the opening deadline (``server.open_timeout_s``: a socket
   whose call has not started by then is closed, :data:`agent.ws_io.OPEN_TIMEOUT`, so idle
   sockets cannot hold session slots); WebRTC waits for ICE to connect, under its own; SIP
   will answer the INVITE and wait for its ACK. ``begin`` returns the session (``None``: the
   peer left first, or the deadline passed).
2. **run**: :meth:`Session.run(tasks=...) <agent.session.Session.run>`. The adapter's tasks
   (the reader or readers of its connection, and the writer or the media clock that feeds it)
   run in the session's own task group, beside the stages and the replies: the call's only
   task group. The first task to fail ends the call, and
   :class:`~pipeline.errors.StageFailed` comes out from it. A peer that says goodbye or leaves
   is no failure: its reader says so (``session.end_input()``, or the adapter's own cancel
   scope) and the group ends; so does a session that hangs up.
3. **finish**, after the group, whatever ended it: the protocol's last words (sent under a
   timeout, never to a peer that left) and the connection closed.

::

    run_call(connection)
    ├─ begin()                      no task group yet: read, answer, until the call starts
    ├─ Session.run(tasks=…)         ONE task group
    │    ├─ vad, asr, control, playout, replies …   (the session's)
    │    └─ reader(s), writer / media clock         (the connection's)
    └─ finish(session, failure)     last words, close

The seam for a new transport is this one protocol, plus a ``CallSink`` for what the session
says. The WebSocket adapters (:mod:`agent.ws_io`: native, Realtime, Twilio) contribute a
sans-I/O protocol and a handler; WebRTC (:mod:`agent.webrtc_call`) contributes a data-channel
reader (aiortc's callback only queues, bounded), a track reader and the outgoing track's media
clock. SIP (:mod:`agent.sip_server`, :mod:`agent.sip_call`) fits the same way:

- a process-wide user agent per listen address owns the UDP signalling socket and routes each
  dialog's requests into its call's bounded inbox;
- ``begin``: answer the INVITE (SDP answer, one RTP port; 180, then 200) and wait for the ACK;
- tasks: ``signalling`` (BYE ends the call), ``rtp-in`` (RTP into the call leg's jitter
  buffer, a media timeout) and ``media-clock``: every 20 ms the caller's next frame goes to
  ``session.push_audio`` and the bot's next frame (or comfort silence) goes out as RTP;
- its sink writes reply audio into the call leg (:class:`~transports.rtp.stream.RtpStream`)
  and, on barge-in, clears it and reports what was sent as heard;
- ``finish``: BYE when the agent hung up, then the RTP socket closed.

Reply audio comes from the session's playout, paced a bounded ``lead`` ahead of real time, so
every transport's outgoing buffer stays small and a barge-in clears little.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from agent.session import Session

#: the sessions running in this process, every transport's: :func:`run_call` holds each here
#: while it runs, so a server going away can say goodbye to them (:mod:`agent.drain`)
RUNNING: set[Session] = set()

#: told of each call as its session starts; returns what to call once the call is over, with
#: the failure that ended it (``None``: none). Neither may wait or raise
Watcher = Callable[[Session], Callable[[Exception | None], None]]
#: what watches every call of this process, every transport's (a server's call records:
#: :class:`agent.records.Recorder`, while it runs)
WATCHERS: list[Watcher] = []

#: one of a connection's tasks: its name and the function run in the call's task group
Task = tuple[str, Callable[[], Awaitable[object]]]


class CallConnection(Protocol):
    """What one transport adds to a call (see the module doc)."""

    async def begin(self) -> Session | None:
        """Until the protocol starts the call: its session (``None``: the peer left first)."""
        ...

    def tasks(self, session: Session) -> Sequence[Task]:
        """The connection's readers and writers, to run in the session's task group."""
        ...

    async def finish(self, session: Session | None, failure: Exception | None) -> None:
        """After the call, however it ended: the last words and the close."""
        ...


async def run_call(connection: CallConnection) -> None:
    """Run one call on ``connection``: begin, the session with its tasks, finish.

    ``finish`` always runs (also when the call is cancelled from outside: it shields what
    must complete); a failure (from the session, :class:`~pipeline.errors.StageFailed`) is
    passed to it, then raised.
    """
    session: Session | None = None
    failure: Exception | None = None
    watched: list[Callable[[Exception | None], None]] = []
    try:
        session = await connection.begin()
        if session is not None:
            RUNNING.add(session)
            watched = [watch(session) for watch in WATCHERS]
            try:
                await session.run(tasks=connection.tasks(session))
            finally:
                RUNNING.discard(session)
    except Exception as error:
        failure = error
        raise
    finally:
        try:
            await connection.finish(session, failure)
        finally:
            for ended in watched:
                ended(failure)
