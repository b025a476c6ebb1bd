"""The call records' schema, as numbered migrations: the same SQL for SQLite and PostgreSQL.

:func:`agent.records.store.CallStore.migrate` applies, in one transaction at start-up, every
migration numbered above the highest in ``schema_version``, and records each there; a
database already up to date is left as it is, so starting twice changes nothing. Each
migration is a list of statements in the subset both engines take (``TEXT``, ``INTEGER``,
``DOUBLE PRECISION``, plain indexes). A new migration is appended with the next number; one
that has shipped is never edited.

A record is its JSON document (``record``, :class:`~agent.records.model.CallRecord`) beside
the columns that the listing filters and orders by: the document can grow fields without a
migration; a new filter needs one.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION_DDL"]

SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " applied_at DOUBLE PRECISION NOT NULL)"
)

#: (number, statements), in order
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "CREATE TABLE calls ("
            " id TEXT PRIMARY KEY,"
            " agent TEXT NOT NULL,"
            " transport TEXT NOT NULL,"
            " started_at DOUBLE PRECISION NOT NULL,"  # unix seconds
            " ended_at DOUBLE PRECISION NOT NULL,"
            " end_reason TEXT NOT NULL,"
            " record TEXT NOT NULL)",
            "CREATE INDEX calls_by_start ON calls (started_at, id)",
            "CREATE INDEX calls_by_agent ON calls (agent, started_at)",
            "CREATE INDEX calls_by_transport ON calls (transport, started_at)",
        ),
    ),
)
