"""Call records: every call's record written to a database, and read back over REST.

- :mod:`agent.records.model`: the record (msgspec structs) and the listing's queries;
- :mod:`agent.records.call_log`: one call's record as it happens (sans-I/O);
- :mod:`agent.records.recorder`: the listener that feeds it (:func:`record_call`, through
  :class:`agent.call_watch.WatchingSink`), the bounded queue and the server's one writer task;
- :mod:`agent.records.recording`: each call's stereo WAV (``recording_dir``), its bounded
  queue and the server's one writer (:class:`Recordings`), laid out by
  :mod:`agent.records.recording_mix` (sans-I/O);
- :mod:`agent.records.store`: SQLite or PostgreSQL, on a worker thread;
- :mod:`agent.records.migrations`: the schema, numbered;
- :mod:`agent.records.routes`: ``GET /v1/calls``, ``GET /v1/calls/{id}`` and its recording.

Configured by ``server.records`` (docs/config.md "Call records").
"""

from __future__ import annotations

from agent.records.model import CallPage, CallQuery, CallRecord, Line, Note, ToolUse
from agent.records.recorder import Recorder, RecordsUnavailable
from agent.records.recording import Recordings
from agent.records.store import CallStore, StoreError

__all__ = [
    "CallPage",
    "CallQuery",
    "CallRecord",
    "CallStore",
    "Line",
    "Note",
    "Recorder",
    "Recordings",
    "RecordsUnavailable",
    "StoreError",
    "ToolUse",
]
