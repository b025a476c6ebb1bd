"""The call id (and the trace id) on every log line written while a call is handled.

Two context variables hold them: :data:`CALL_ID`, set by :func:`watch_call` (a
:data:`agent.call_loop.WATCHERS` entry the server installs) as the call's session starts, in
the call's own task, before its task group opens: every task of the call inherits it, and it
stays until the call's task ends (the transport's last words and the server's own lines about
the call included); :data:`TRACE_ID`, set the same way by :mod:`agent.tracing` when the call
is traced. :class:`CallFields` puts them on each log record (``call_id``, ``trace_id``, and
``call``: `` [call=ID trace=ID]``, or nothing outside a call), and ``voxline serve`` logs with
:data:`LOG_FORMAT`::

    2026-12-06 19:40:02,114 INFO voxline.calls [call=52e9… trace=4bf9…] call started (native)

Lines from the model workers' threads, and uvicorn's own, belong to no call and carry neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar

from agent import call_loop
from agent.records.recorder import end_reason, transport_of
from agent.session import Session

__all__ = [
    "CALL_ID",
    "LOG_FORMAT",
    "TRACE_ID",
    "CallFields",
    "configure_logging",
    "install",
    "watch_call",
]

log = logging.getLogger("voxline.calls")

#: the id of the call being handled (its session id); empty outside a call
CALL_ID: ContextVar[str] = ContextVar("voxline_call_id", default="")
#: the trace id of the call being handled (32 hex digits), when it is traced; else empty
TRACE_ID: ContextVar[str] = ContextVar("voxline_trace_id", default="")

#: ``voxline serve``'s log lines: ``call`` is :class:`CallFields`'
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s%(call)s %(message)s"


class CallFields(logging.Filter):
    """Adds ``call_id``, ``trace_id`` and ``call`` (both, formatted) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        call_id, trace_id = CALL_ID.get(), TRACE_ID.get()
        record.call_id, record.trace_id = call_id, trace_id
        if not call_id:
            record.call = ""
        elif trace_id:
            record.call = f" [call={call_id} trace={trace_id}]"
        else:
            record.call = f" [call={call_id}]"
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr with :data:`LOG_FORMAT` (the root logger, as ``logging.basicConfig``)."""
    handler = logging.StreamHandler()
    handler.addFilter(CallFields())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


def watch_call(session: Session) -> Callable[[Exception | None], None]:
    """A call starts (:data:`agent.call_loop.WATCHERS`): its id goes on the log lines of its
    task and of every task it starts; a line says it started, and one that it ended."""
    CALL_ID.set(session.id)
    start = session.clock.now()
    log.info("call started (%s)", transport_of(session.outbox.sink))

    def ended(failure: Exception | None) -> None:
        took = session.clock.now() - start
        log.info("call ended (%s) after %.1f s", end_reason(session, failure), took)

    return ended


def install() -> None:
    """Watch every call of this process with :func:`watch_call` (once, however often
    called: every server in the process shares the watchers)."""
    if watch_call not in call_loop.WATCHERS:
        call_loop.WATCHERS.append(watch_call)
