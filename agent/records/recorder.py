"""A server's call records: every call observed, its record queued, one writer task storing them.

::

    run_call (every transport)                       the server's task group
    ├─ Recorder.started(session): record_call        └─ Recorder.run: open + migrate,
    │    wraps the session's sink: what it says           retention (at start, then daily),
    │    goes on unchanged, and into its CallLog          batches to CallStore.write on a
    └─ at the end: the record ─► queue ─────────────►     worker thread

:meth:`Recorder.started` is a :data:`agent.call_loop.WATCHERS` entry while :meth:`Recorder.run`
runs: every transport's call is seen the same way, and the transport gets exactly what it got
without it (the sink, :class:`agent.call_watch.WatchingSink`, forwards first-hand; recording
is a few appends, by :class:`CallRecording`). Queue policy: DROP NEWEST, counted
(``voxline_records_dropped_total{reason="queue_full"}``): a finished call's record is offered
without waiting, so a slow or unreachable database never holds up a call.
A batch the database refuses is dropped and counted too (``write_failed``); the next batch
opens the connection again. The database is opened in the background (retried, with
back-off, while it cannot be reached: records wait in the queue meanwhile).

With ``recording_dir`` set, each call is also recorded in stereo
(:mod:`agent.records.recording`: its own bounded queue and writer, which :meth:`Recorder.run`
runs beside the records'; retention deletes the recordings with their records), and its
record names the file (``recording``).

The transport's name is its sink's class (``NativeSink`` is ``native``, ``WebRtcSink``
``webrtc``). Tool calls are read from the LLM dialogue's history (:mod:`agent.responders`)
after each reply and at the end: their ``at_s`` is when the record saw them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.abc
import anyio.to_thread
import msgspec

from agent import call_loop
from agent.call_watch import WatchingSink, transport_of
from agent.config.schema import RecordsConfig
from agent.dialogue.llm_history import History
from agent.metrics import METRICS
from agent.records.call_log import CallLog
from agent.records.model import CallRecord
from agent.records.recording import CallAudio, Recordings, recording_directory
from agent.records.store import CallStore, default_url, redacted
from agent.responders import IntentResponder, LLMResponder
from agent.session import Session
from agent.session_events import CallEnded, SessionEvent, UserTurn

__all__ = [
    "BATCH",
    "CallRecording",
    "Recorder",
    "RecordsUnavailable",
    "end_reason",
    "record_call",
    "transport_of",  # agent.call_watch's, here too: the records name calls' transports by it
]

log = logging.getLogger("voxline.records")

T = TypeVar("T")

#: records written in one transaction at most
BATCH = 100
DAY_S = 86_400.0
#: the longest wait between two tries to open the database
MAX_RETRY_S = 60.0
#: seconds the records still queued at shutdown have to be written
FLUSH_S = 10.0


class RecordsUnavailable(Exception):
    """The records database is not open (yet): it could not be reached."""


def end_reason(session: Session | None, failure: Exception | None) -> str:
    """Why the call ended: the session's reason, else ``error`` (it failed) or ``hangup``."""
    ended = session.ended if session is not None else None
    return ended or ("error" if failure is not None else "hangup")


class CallRecording:
    """One call's record as it happens: a :class:`~agent.call_watch.CallListener` that tells
    ``log`` what the session says, and the tool calls in its LLM's history after each reply,
    each caller turn and at the end (``start``: the call's start on the session clock)."""

    def __init__(self, log: CallLog, session: Session, start: float) -> None:
        self.log = log
        # not the session itself: it holds this recording (its outbox's sink), and a reference
        # back would keep the ended call in a cycle until a full collection
        self._clock, self._responder = session.clock, session.responder
        self._session = weakref.ref(session)  # for its end reason
        self._start = start

    def now(self) -> float:
        """Seconds since the call started."""
        return self._clock.now() - self._start

    def event(self, event: SessionEvent, at: float) -> None:
        self.log.event(event, at)
        if isinstance(event, UserTurn | CallEnded):
            self.tools_seen(at)

    def audio_started(self, generation: int, at: float) -> None:
        self.log.audio(generation, at)

    def audio_ended(self, generation: int, at: float) -> None:
        self.log.audio_ended(generation, at)
        self.tools_seen(at)

    def audio_cleared(self, generation: int, played: int | None, at: float) -> None:
        self.audio_ended(generation, at)

    def tools_seen(self, at: float) -> None:
        """Read the tool calls in the LLM's history into the log."""
        history = _history(self._responder)
        if history is None:
            return
        results = {m.tool_call_id: m.content for m in history.messages if m.role == "tool"}
        for message in history.messages:
            for call in message.tool_calls:
                result = results.get(call.id)
                self.log.tool(call.id, call.name, call.arguments, result, round(at, 3))

    def record(self, ended_at: dt.datetime, failure: Exception | None) -> CallRecord:
        """The call's record once it is over (``failure``: what ended it, ``None``: none)."""
        self.tools_seen(self.now())
        # the session is alive here: the call's loop holds it until its watchers are told
        return self.log.record(ended_at, end_reason(self._session(), failure))


def record_call(session: Session, agent: str, started_at: dt.datetime) -> CallRecording:
    """Record ``session``'s call from now on: its :class:`CallLog`, told what the session says
    by a :class:`~agent.call_watch.WatchingSink` put around its sink (a failure to tell it is
    logged once, and the call goes on). Raises what building them raises, wrapping nothing."""
    outbox = session.outbox
    start = session.clock.now()
    input_clock = session.input
    call_log = CallLog(
        call_id=session.id,
        agent=agent,
        transport=transport_of(outbox.sink),
        started_at=started_at,
        caller_time=lambda sample: input_clock.wall_time_of(sample) - start,
    )
    recording = CallRecording(call_log, session, start)
    outbox.sink = WatchingSink(
        outbox.sink, recording, recording.now, call_id=session.id, what="recording", log=log
    )
    return recording


def _history(responder: object) -> History | None:
    if isinstance(responder, IntentResponder):
        responder = responder.llm
    return responder.history if isinstance(responder, LLMResponder) else None


class Recorder:
    """One server's call records (see the module doc): ``agent`` names its calls."""

    def __init__(
        self,
        config: RecordsConfig,
        agent: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.agent = agent
        self.store = CallStore(config.url or default_url())
        self.clock = clock
        #: the calls' stereo recordings (``recording_dir``; ``None``: off): raises
        #: :class:`~pipeline.errors.ConfigError` if that directory cannot be written to
        self.recordings: Recordings | None = None
        if config.recording_dir is not None:
            self.recordings = Recordings(recording_directory(config.recording_dir))
        self._send, self._receive = anyio.create_memory_object_stream[CallRecord](config.queue)
        self._limiter = anyio.CapacityLimiter(1)  # the store's calls, one at a time
        #: the database is open and migrated
        self.ready = False
        self.dropped = 0
        self._running = False
        self._stopped = anyio.Event()

    # -- the calls' side (never waits) -------------------------------------------------------

    def started(self, session: Session) -> Callable[[Exception | None], None]:
        """A call has started (:data:`agent.call_loop.WATCHERS`): observe it; returns what
        ends its record."""
        try:
            recording = record_call(session, self.agent, dt.datetime.now(dt.UTC))
        except Exception:
            log.exception("call %s: not recorded", session.id)
            return lambda failure: None
        audio: CallAudio | None = None
        if self.recordings is not None:
            try:
                audio = self.recordings.start(session)
            except Exception:
                log.exception("call %s: its audio is not recorded", session.id)

        def ended(failure: Exception | None) -> None:
            if audio is not None:
                audio.end()  # its writer finishes the file
            try:
                record = recording.record(dt.datetime.now(dt.UTC), failure)
                if audio is not None:
                    record = msgspec.structs.replace(record, recording=audio.name)
                self.submit(record)
            except Exception:
                log.exception("call %s: its record was lost", session.id)

        return ended

    def submit(self, record: CallRecord) -> bool:
        """Queue ``record`` for the writer; ``False``: the queue was full (dropped, counted)."""
        try:
            self._send.send_nowait(record)
        except anyio.WouldBlock:
            self._drop("queue_full", 1)
            log.warning("call %s: its record was dropped (the records queue is full)", record.id)
            return False
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._drop("unavailable", 1)
            return False
        return True

    def _drop(self, reason: str, count: int) -> None:
        self.dropped += count
        METRICS.records_dropped(reason, count)

    # -- the API's side ----------------------------------------------------------------------

    async def read(self, query: Callable[[CallStore], T]) -> T:
        """``query(store)`` on a worker thread; :class:`RecordsUnavailable` if not open."""
        if not self.ready:
            raise RecordsUnavailable("the call records database is not available")
        return await anyio.to_thread.run_sync(query, self.store, limiter=self._limiter)

    # -- the writer --------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The writer: observe the calls, open the database, then write what comes, until
        cancelled (or :meth:`aclose`); retention at start and every day. The recordings'
        writer (:class:`~agent.records.recording.Recordings`) runs beside it."""
        self._running = True
        call_loop.WATCHERS.append(self.started)
        try:
            async with anyio.create_task_group() as tg:
                if self.recordings is not None:
                    await tg.start(self.recordings.run)
                task_status.started()
                await self._write_records()
                tg.cancel_scope.cancel()  # the recordings' writer finishes what is open
        finally:
            call_loop.WATCHERS.remove(self.started)
            self._running = False
            self._stopped.set()

    async def _write_records(self) -> None:
        """Open the database, then write what comes until the queue is closed."""
        await self._open()
        await self._retain()
        due = anyio.current_time() + DAY_S
        while True:
            batch: list[CallRecord] = []
            with anyio.move_on_after(max(0.0, due - anyio.current_time())):
                try:
                    batch = await self._next_batch()
                except anyio.EndOfStream:
                    return
            await self._write(batch)
            if anyio.current_time() >= due:
                await self._retain()
                due = anyio.current_time() + DAY_S

    async def aclose(self) -> None:
        """No more records: what is queued is written (:data:`FLUSH_S` at most), then the
        database is closed."""
        self._send.close()
        with anyio.move_on_after(FLUSH_S, shield=True):
            if self._running:
                await self._stopped.wait()  # it writes what is left, then stops
            left: list[CallRecord] = []
            while True:
                try:
                    left.append(self._receive.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            if left and self.ready:
                await self._write(left)
            elif left:  # the database never opened
                self._drop("unavailable", len(left))
            await anyio.to_thread.run_sync(self.store.close, limiter=self._limiter)
        if self.recordings is not None:  # (its writer finished them, if it ran)
            await self.recordings.aclose()
        self._receive.close()
        self.ready = False

    async def _open(self) -> None:
        delay = 1.0
        while True:
            try:
                version = await anyio.to_thread.run_sync(self.store.migrate, limiter=self._limiter)
            except Exception as error:
                log.warning(
                    "call records: cannot open %s (%s: %s); trying again in %g s",
                    redacted(self.store.url),
                    type(error).__name__,
                    error,
                    delay,
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)
                continue
            log.info(
                "call records: %s (%s, schema %d)",
                redacted(self.store.url),
                self.store.engine.name,
                version,
            )
            self.ready = True
            return

    async def _next_batch(self) -> list[CallRecord]:
        batch = [await self._receive.receive()]
        while len(batch) < BATCH:
            try:
                batch.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return batch

    async def _write(self, batch: list[CallRecord]) -> None:
        if not batch:
            return
        try:
            await anyio.to_thread.run_sync(self.store.write, batch, limiter=self._limiter)
        except Exception as error:
            self._drop("write_failed", len(batch))
            log.error(
                "call records: %d record(s) not written (%s: %s)",
                len(batch),
                type(error).__name__,
                error,
            )
            return
        for record in batch:
            log.info("call %s recorded", record.id)

    async def _retain(self) -> None:
        cutoff = self.clock() - self.config.retention_days * DAY_S
        try:
            deleted = await anyio.to_thread.run_sync(
                self.store.delete_before, cutoff, limiter=self._limiter
            )
        except Exception as error:
            log.error("call records: retention failed (%s: %s)", type(error).__name__, error)
            return
        if deleted:
            log.info(
                "call records: %d older than %g days deleted", deleted, self.config.retention_days
            )
        if self.recordings is None:
            return
        try:  # the recordings go with their records
            deleted = await anyio.to_thread.run_sync(self.recordings.delete_before, cutoff)
        except Exception as error:
            log.error("call recordings: retention failed (%s: %s)", type(error).__name__, error)
            return
        if deleted:
            log.info("call recordings: %d older than the records' retention deleted", deleted)
