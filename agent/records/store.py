"""Where call records live: SQLite (the standard library's, embedded) or PostgreSQL (psycopg 3).

:class:`CallStore` is synchronous: the server calls it on a worker thread
(:class:`~agent.records.recorder.Recorder`), never on the event loop. One connection per store,
used by one thread at a time (a lock): the writer's batches and the API's reads take turns.
The connection is opened on first use and again after it broke (a PostgreSQL restart costs the
batch in flight, not the records after it).

URLs: ``sqlite:///PATH`` (SQLAlchemy's spelling: ``sqlite:///calls.db`` is relative to the
working directory, ``sqlite:////var/lib/voxline/calls.db`` absolute, ``~`` expands, and
``sqlite:///:memory:`` is a throwaway database); ``postgresql://`` or ``postgres://``, as libpq
reads them (``?host=/run/postgresql`` for a socket directory). With no URL configured, records
go to ``calls.db`` in the user's data directory (:func:`default_url`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

import msgspec

from agent.records.migrations import MIGRATIONS, SCHEMA_VERSION_DDL
from agent.records.model import CallPage, CallQuery, CallRecord, encode_cursor

__all__ = ["CallStore", "StoreError", "default_url", "redacted"]

log = logging.getLogger("voxline.records")

_DECODER = msgspec.json.Decoder(CallRecord)


class StoreError(Exception):
    """The records database cannot be used as configured (a bad URL, a missing driver)."""


class _Cursor(Protocol):
    """The DB-API cursor both drivers give."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[object] = (), /) -> object: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def close(self) -> None: ...


class _Connection(Protocol):
    def cursor(self) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Engine:
    name: str
    #: the driver's parameter marker (the SQL here is written with ``?``)
    marker: str
    #: what a writing transaction begins with (``None``: the driver begins it)
    begin_write: str | None
    begin_read: str | None
    #: taken first in the migration's transaction: two servers starting at once take turns
    migration_lock: str | None


_SQLITE = _Engine("sqlite", "?", "BEGIN IMMEDIATE", "BEGIN", None)
_POSTGRES = _Engine("postgresql", "%s", None, None, "SELECT pg_advisory_xact_lock(2020081720)")


def default_url() -> str:
    """SQLite in the XDG data directory: ``$XDG_DATA_HOME/voxline/calls.db`` (default
    ``~/.local/share/voxline/calls.db``)."""
    base = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return f"sqlite:///{base}/voxline/calls.db"


def redacted(url: str) -> str:
    """``url`` without its password (for the log)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class CallStore:
    """The ``calls`` table of one database (see the module doc)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            self.engine = _SQLITE
            self._path = url.removeprefix("sqlite:///")
            if not self._path:
                raise StoreError("records url: sqlite:/// needs a path")
        elif url.startswith(("postgresql://", "postgres://")):
            self.engine = _POSTGRES
            self._path = ""
        else:
            raise StoreError("records url: sqlite:///PATH or postgresql://... expected")
        self._lock = threading.Lock()
        self._connection: _Connection | None = None

    # -- the schema -------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply the migrations this database lacks (:mod:`agent.records.migrations`);
        returns its schema version."""
        latest = MIGRATIONS[-1][0]
        with self._transaction(write=True) as cursor:
            if self.engine.migration_lock is not None:
                cursor.execute(self.engine.migration_lock)
            cursor.execute(SCHEMA_VERSION_DDL)
            cursor.execute("SELECT MAX(version) FROM schema_version")
            row = cursor.fetchone()
            version = int(row[0]) if row is not None and row[0] is not None else 0
            for number, statements in MIGRATIONS:
                if number <= version:
                    continue
                for statement in statements:
                    cursor.execute(statement)
                self._execute(
                    cursor,
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (number, time.time()),
                )
                log.info("call records: schema migration %d applied", number)
                version = number
        if version > latest:
            log.warning(
                "call records: the database's schema (%d) is newer than this server's (%d)",
                version,
                latest,
            )
        return version

    # -- writing ----------------------------------------------------------------------------

    def write(self, records: Sequence[CallRecord]) -> None:
        """Store ``records`` in one transaction (a call already stored is left as it is)."""
        if not records:
            return
        with self._transaction(write=True) as cursor:
            for record in records:
                self._execute(
                    cursor,
                    "INSERT INTO calls"
                    " (id, agent, transport, started_at, ended_at, end_reason, record)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (
                        record.id,
                        record.agent,
                        record.transport,
                        record.started_at.timestamp(),
                        record.ended_at.timestamp(),
                        record.end_reason,
                        msgspec.json.encode(record).decode(),
                    ),
                )

    def delete_before(self, cutoff: float) -> int:
        """Delete the calls that started before ``cutoff`` (unix seconds); how many."""
        with self._transaction(write=True) as cursor:
            self._execute(cursor, "DELETE FROM calls WHERE started_at < ?", (cutoff,))
            return max(0, cursor.rowcount)

    # -- reading ----------------------------------------------------------------------------

    def get(self, call_id: str) -> CallRecord | None:
        with self._transaction(write=False) as cursor:
            self._execute(cursor, "SELECT record FROM calls WHERE id = ?", (call_id,))
            row = cursor.fetchone()
        return None if row is None else _DECODER.decode(row[0])

    def search(self, query: CallQuery) -> CallPage:
        """One page of the calls ``query`` asks for, newest first."""
        where: list[str] = []
        params: list[object] = []
        for column, value in (("agent", query.agent), ("transport", query.transport)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            where.append("started_at >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("started_at < ?")
            params.append(query.until)
        if query.after is not None:
            started_at, call_id = query.after
            where.append("(started_at < ? OR (started_at = ? AND id < ?))")
            params.extend((started_at, started_at, call_id))
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        sql = (
            f"SELECT started_at, id, record FROM calls{condition}"
            " ORDER BY started_at DESC, id DESC LIMIT ?"
        )
        with self._transaction(write=False) as cursor:
            self._execute(cursor, sql, (*params, query.limit + 1))
            rows = cursor.fetchall()
        page, more = rows[: query.limit], len(rows) > query.limit
        last = page[-1] if page else None
        return CallPage(
            data=[_DECODER.decode(row[2]) for row in page],
            has_more=more,
            next_cursor=encode_cursor(float(last[0]), str(last[1])) if more and last else None,
        )

    # -- the connection ---------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                with contextlib.suppress(Exception):  # closing what broke: nothing to do
                    self._connection.close()
                self._connection = None

    def _execute(self, cursor: _Cursor, sql: str, params: Sequence[object]) -> None:
        if self.engine.marker != "?":
            sql = sql.replace("?", self.engine.marker)
        cursor.execute(sql, params)

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[_Cursor]:
        """A cursor in a transaction, committed at the end (rolled back on an error; a
        connection that broke is dropped, and opened again next time)."""
        begin = self.engine.begin_write if write else self.engine.begin_read
        with self._lock:
            connection = self._connection or self._connect()
            cursor = cast(_Cursor, connection.cursor())
            try:
                if begin is not None:
                    cursor.execute(begin)
                yield cursor
                connection.commit()
            except BaseException:
                try:
                    connection.rollback()
                except Exception:
                    with contextlib.suppress(Exception):
                        connection.close()
                    self._connection = None
                else:
                    if getattr(connection, "broken", False):
                        self._connection = None
                raise
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()

    def _connect(self) -> _Connection:
        if self.engine is _SQLITE:
            path = self._path
            if path != ":memory:":
                file = Path(path).expanduser()
                file.parent.mkdir(parents=True, exist_ok=True)
                path = str(file)
            sqlite = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            sqlite.execute("PRAGMA busy_timeout = 5000")  # another server writing the file
            if path != ":memory:":
                sqlite.execute("PRAGMA journal_mode = WAL")  # readers beside a writer
            connection: _Connection = sqlite
        else:
            try:
                import psycopg
            except ImportError:
                raise StoreError(
                    "records url: PostgreSQL needs psycopg (pip install 'voxline[postgres]')"
                ) from None
            connection = psycopg.connect(self.url, connect_timeout=10)
        self._connection = connection
        return connection
