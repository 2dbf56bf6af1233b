"""What differs between SQLite and PostgreSQL, in one class per dialect."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy import ColumnElement, case, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from gyre.errors import InvalidArgument


class SqlDialect(ABC):
    """The operations whose SQL differs by database. Instances are equal per database kind,
    so statements built for a dialect can be cached."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    name = ""

    def engine_options(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def insert(self, table: Any) -> Any:
        """An INSERT that supports ``.on_conflict_do_update`` / ``.on_conflict_do_nothing``."""

    def lock_for_migration(self, conn: Connection) -> None:  # noqa: B027 - a no-op where writers are serialised
        """Serialise schema creation between processes that start at the same time."""

    @abstractmethod
    def json_object_agg(self, key: Any, value: Any, *, numeric: bool = False) -> ColumnElement[Any]:
        """Aggregate ``key -> value`` rows into one JSON object (non-finite numbers as strings)."""

    # Whether events become visible in ``seq`` order, i.e. a reader can never see seq N+1
    # committed while seq N is still in flight. True where writers are serialised.
    events_commit_in_seq_order = False

    def event_writers(self, conn: Connection) -> frozenset[str]:
        """Transactions (other than ``conn``'s) that may be inserting into ``events`` right now.

        Only asked when ``events_commit_in_seq_order`` is false. Contract: every transaction
        that has been handed an ``events.seq`` value and has not yet finished is in the result,
        under an id that a later transaction does not reuse soon (a reused id can only make a
        caller wait longer, never miss a writer).
        """
        raise NotImplementedError


class SqliteDialect(SqlDialect):
    name = "sqlite"
    # One writer at a time (write transactions start with BEGIN IMMEDIATE), so rowids are
    # handed out and committed in the same order.
    events_commit_in_seq_order = True

    def engine_options(self) -> dict[str, Any]:
        # The BEGIN IMMEDIATE of a write transaction already serialises migrations.
        return {"connect_args": {"check_same_thread": False, "timeout": 60}}

    def insert(self, table: Any) -> Any:
        return sqlite.insert(table)

    def json_object_agg(self, key: Any, value: Any, *, numeric: bool = False) -> ColumnElement[Any]:
        if numeric:  # SQLite's JSON writes infinity as the invalid token Inf; spell it out
            value = case((value > _MAX_DOUBLE, "Infinity"), (value < -_MAX_DOUBLE, "-Infinity"), else_=value)
        return func.json_group_object(key, value)


class PostgresDialect(SqlDialect):
    name = "postgresql"

    def engine_options(self) -> dict[str, Any]:
        return {
            "pool_pre_ping": True,
            "pool_size": 5,
            "max_overflow": 10,
            "connect_args": {"connect_timeout": 5},
        }

    def insert(self, table: Any) -> Any:
        return postgresql.insert(table)

    def json_object_agg(self, key: Any, value: Any, *, numeric: bool = False) -> ColumnElement[Any]:
        # PostgreSQL writes non-finite float8 values as the strings "NaN" and "Infinity".
        return func.json_object_agg(key, value)

    def lock_for_migration(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(7268697265)"))  # 'gyre' as a number

    def event_writers(self, conn: Connection) -> frozenset[str]:
        # A sequence hands out values when asked, not when the transaction commits: seq 10
        # may still be in flight while seq 11 is already visible. Every INSERT into
        # ``events`` takes a RowExclusiveLock on the table when it is parsed or its plan is
        # locked, before the column default calls nextval(), and keeps it until its
        # transaction ends. So any transaction holding a seq that is not yet final shows up
        # here, under its virtual transaction id (backend slot / local counter; the counter
        # survives slot reuse, so an id recurs only after 2^32 transactions on that slot or
        # a server restart). pg_locks includes fast-path locks and needs no privilege. This
        # reads lock state only: it never blocks writers, unlike LOCK TABLE.
        # Assumes seqs are only drawn by INSERTs into ``events`` (the column default), never
        # by a bare nextval() whose INSERT comes later.
        rows = conn.execute(
            text(
                "SELECT DISTINCT virtualtransaction FROM pg_locks "
                "WHERE locktype = 'relation' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND relation = to_regclass('events') AND mode = 'RowExclusiveLock' "
                "AND pid IS DISTINCT FROM pg_backend_pid()"
            )
        )
        return frozenset(r[0] for r in rows)


_MAX_DOUBLE = 1.7976931348623157e308


def dialect_for(url: str) -> SqlDialect:
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        return SqliteDialect()
    if scheme in {"postgresql", "postgres"}:
        return PostgresDialect()
    raise InvalidArgument(
        f"Unsupported metadata URL scheme '{scheme}://'; use sqlite:///path/meta.db or "
        "postgresql://user@host:5432/db."
    )
